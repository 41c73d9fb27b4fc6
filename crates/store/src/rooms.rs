//! The `rooms` and `room_members` tables, and the membership rules that need a transaction:
//!
//! - the creator of a room is its first admin;
//! - **the last admin may not leave, be demoted or be removed while other members remain** — they must
//!   promote someone first ([`MembershipChange::LastAdmin`]); when the last member leaves, the room is
//!   deleted with its history;
//! - all role changes lock the room's member rows (`FOR UPDATE`), so two admins demoting each other at
//!   once cannot leave a room without an admin.

use crate::{Member, Membership, Message, Room, RoomSummary, Store, StoreError, StoreResult};
use chrono::Utc;
use sqlx::Row;
use uuid::Uuid;

/// `SELECT <room columns> FROM rooms r <tail>`, as one static string.
macro_rules! room_select {
    ($tail:literal) => {
        concat!(
            "SELECT r.id, r.name, r.description, r.is_private, r.invite_code, r.created_by, r.created_at, \
             r.updated_at, (SELECT COUNT(*) FROM room_members c WHERE c.room_id = r.id) AS member_count \
             FROM rooms r ",
            $tail
        )
    };
}

/// A new room, already validated.
pub struct NewRoom<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub is_private: bool,
    pub invite_code: &'a str,
    pub created_by: Uuid,
}

/// Room fields to change; `None` leaves a field as it is.
#[derive(Default)]
pub struct RoomUpdate<'a> {
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub is_private: Option<bool>,
    /// A new invite code (set when a room turns private, so codes seen while it was public stop working).
    pub invite_code: Option<&'a str>,
}

/// The outcome of a membership change that the rules may refuse.
#[derive(Debug, PartialEq, Eq)]
pub enum MembershipChange {
    Done,
    /// Refused: the acting user is not (or no longer) an admin of the room.
    NotAdmin,
    /// The user is not a member.
    NotMember,
    /// Refused: the room would be left without an admin while it still has members.
    LastAdmin,
    /// The last member left, so the room was deleted.
    RoomDeleted,
}

/// A page of discoverable rooms.
pub struct RoomPage {
    pub rooms: Vec<Room>,
    pub total: i64,
}

impl Store {
    /// Creates a room with its creator as admin, in one transaction.
    ///
    /// # Errors
    /// Database errors (an invite-code collision surfaces as `Conflict`).
    pub async fn create_room(&self, new: NewRoom<'_>) -> StoreResult<Room> {
        let id = Uuid::now_v7();
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO rooms (id, name, description, is_private, invite_code, created_by, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(new.name)
        .bind(new.description)
        .bind(new.is_private)
        .bind(new.invite_code)
        .bind(new.created_by)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO room_members (room_id, user_id, role, joined_at) VALUES (?, ?, 'admin', ?)")
            .bind(id)
            .bind(new.created_by)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.room(id).await
    }

    /// # Errors
    /// [`StoreError::NotFound`] when there is no such room.
    pub async fn room(&self, id: Uuid) -> StoreResult<Room> {
        sqlx::query_as::<_, Room>(room_select!("WHERE r.id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// # Errors
    /// [`StoreError::NotFound`] when no room has this invite code.
    pub async fn room_by_invite(&self, code: &str) -> StoreResult<Room> {
        sqlx::query_as::<_, Room>(room_select!(
            "WHERE r.invite_code = ? AND BINARY r.invite_code = ?"
        ))
        .bind(code)
        .bind(code)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// Public rooms whose name contains `search` (all when `None`), by name, with the total count.
    ///
    /// # Errors
    /// Database errors.
    pub async fn discover_rooms(
        &self,
        search: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<RoomPage> {
        let pattern = search.map(|s| format!("%{}%", escape_like(s)));
        let rooms = sqlx::query_as::<_, Room>(room_select!(
            "WHERE r.is_private = FALSE AND (? IS NULL OR r.name LIKE ?) ORDER BY r.name, r.id LIMIT ? OFFSET ?"
        ))
        .bind(pattern.as_deref())
        .bind(pattern.as_deref())
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let (total,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM rooms r WHERE r.is_private = FALSE AND (? IS NULL OR r.name LIKE ?)")
                .bind(pattern.as_deref())
                .bind(pattern.as_deref())
                .fetch_one(&self.pool)
                .await?;
        Ok(RoomPage { rooms, total })
    }

    /// The rooms `user` belongs to, most recently active first, with unread counts and last messages.
    ///
    /// # Errors
    /// Database errors.
    pub async fn rooms_of_user(&self, user: Uuid) -> StoreResult<Vec<RoomSummary>> {
        // Two queries: my rooms, then my membership of each with its last message (a MAX(seq) lookup on
        // the (room_id, seq) index per room).
        let rooms: Vec<Room> = sqlx::query_as(room_select!(
            "JOIN room_members m ON m.room_id = r.id AND m.user_id = ?"
        ))
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        let mut rooms: std::collections::HashMap<Uuid, Room> =
            rooms.into_iter().map(|r| (r.id, r)).collect();
        let extra_rows = sqlx::query(
            "SELECT m.room_id, m.role, m.joined_at, m.read_seq, m.delivered_seq, lm.id AS lm_id, lm.seq AS lm_seq, \
             lm.sender_id AS lm_sender_id, lm.type AS lm_type, lm.content AS lm_content, \
             lm.client_msg_id AS lm_client_msg_id, lm.created_at AS lm_created_at, lm.edited_at AS lm_edited_at, \
             lm.deleted_at AS lm_deleted_at \
             FROM room_members m LEFT JOIN messages lm ON lm.room_id = m.room_id \
               AND lm.seq = (SELECT MAX(x.seq) FROM messages x WHERE x.room_id = m.room_id) \
             WHERE m.user_id = ?",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(extra_rows.len());
        for row in &extra_rows {
            let room_id: Uuid = row.try_get("room_id")?;
            let Some(room) = rooms.remove(&room_id) else {
                continue;
            };
            let last_message = match row.try_get::<Option<Uuid>, _>("lm_id")? {
                None => None,
                Some(id) => Some(Message {
                    id,
                    room_id,
                    seq: row.try_get("lm_seq")?,
                    sender_id: row.try_get("lm_sender_id")?,
                    kind: row.try_get("lm_type")?,
                    content: row.try_get("lm_content")?,
                    client_msg_id: row.try_get("lm_client_msg_id")?,
                    created_at: row.try_get("lm_created_at")?,
                    edited_at: row.try_get("lm_edited_at")?,
                    deleted_at: row.try_get("lm_deleted_at")?,
                }),
            };
            let last_seq = last_message.as_ref().map_or(0, |msg| msg.seq);
            let read_seq: i64 = row.try_get("read_seq")?;
            out.push(RoomSummary {
                room,
                role: row.try_get("role")?,
                joined_at: row.try_get("joined_at")?,
                last_seq,
                read_seq,
                delivered_seq: row.try_get("delivered_seq")?,
                unread_count: (last_seq - read_seq).max(0),
                last_message,
            });
        }
        out.sort_by(|a, b| {
            let at = |s: &RoomSummary| {
                s.last_message
                    .as_ref()
                    .map_or(s.joined_at, |m| m.created_at)
            };
            at(b).cmp(&at(a))
        });
        Ok(out)
    }

    /// Updates a room's settings.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when there is no such room.
    pub async fn update_room(
        &self,
        id: Uuid,
        actor: Uuid,
        upd: RoomUpdate<'_>,
    ) -> StoreResult<Room> {
        // The admin check is part of the statement, so an admin removed a moment ago cannot still write.
        let res = sqlx::query(
            "UPDATE rooms SET name = COALESCE(?, name), description = COALESCE(?, description), \
             is_private = COALESCE(?, is_private), invite_code = COALESCE(?, invite_code), updated_at = ? \
             WHERE id = ? AND EXISTS (SELECT 1 FROM room_members m \
               WHERE m.room_id = rooms.id AND m.user_id = ? AND m.role = 'admin')",
        )
        .bind(upd.name)
        .bind(upd.description)
        .bind(upd.is_private)
        .bind(upd.invite_code)
        .bind(Utc::now())
        .bind(id)
        .bind(actor)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.room(id).await
    }

    /// Deletes a room with its members and messages.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when there is no such room.
    pub async fn delete_room(&self, id: Uuid, actor: Uuid) -> StoreResult<()> {
        let res = sqlx::query(
            "DELETE FROM rooms WHERE id = ? AND EXISTS (SELECT 1 FROM room_members m \
               WHERE m.room_id = rooms.id AND m.user_id = ? AND m.role = 'admin')",
        )
        .bind(id)
        .bind(actor)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Replaces a room's invite code.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when there is no such room.
    pub async fn set_invite_code(&self, id: Uuid, actor: Uuid, code: &str) -> StoreResult<()> {
        let res = sqlx::query(
            "UPDATE rooms SET invite_code = ?, updated_at = ? WHERE id = ? AND EXISTS (SELECT 1 \
               FROM room_members m WHERE m.room_id = rooms.id AND m.user_id = ? AND m.role = 'admin')",
        )
        .bind(code)
        .bind(Utc::now())
        .bind(id)
        .bind(actor)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Whether `room` exists, is private, and `user`'s role in it — one query, for hot paths that only
    /// need to authorise (history reads). `None` when the room does not exist.
    ///
    /// # Errors
    /// Database errors.
    pub async fn room_access(
        &self,
        room: Uuid,
        user: Uuid,
    ) -> StoreResult<Option<(bool, Option<String>)>> {
        Ok(sqlx::query_as(
            "SELECT r.is_private, m.role FROM rooms r \
             LEFT JOIN room_members m ON m.room_id = r.id AND m.user_id = ? WHERE r.id = ?",
        )
        .bind(user)
        .bind(room)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// `user`'s membership of `room`, if any.
    ///
    /// # Errors
    /// Database errors.
    pub async fn membership(&self, room: Uuid, user: Uuid) -> StoreResult<Option<Membership>> {
        Ok(sqlx::query_as(
            "SELECT room_id, user_id, role, joined_at, read_seq, delivered_seq FROM room_members \
             WHERE room_id = ? AND user_id = ?",
        )
        .bind(room)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Adds `user` as a member if the room is public (`code` is `None`) or `code` is its current invite
    /// code (compared byte for byte: the column's collation is case-insensitive) — checked in the same statement, so a code rotated a moment ago no longer admits anyone.
    /// Returns `false` when nothing was added (already a member, wrong or stale code, no such room).
    ///
    /// # Errors
    /// Database errors.
    pub async fn add_member(
        &self,
        room: Uuid,
        user: Uuid,
        code: Option<&str>,
    ) -> StoreResult<bool> {
        let res = sqlx::query(
            "INSERT INTO room_members (room_id, user_id, role, joined_at) \
             SELECT r.id, ?, 'member', ? FROM rooms r \
             WHERE r.id = ? AND ((? IS NULL AND r.is_private = FALSE) OR BINARY r.invite_code = ?) \
             ON DUPLICATE KEY UPDATE room_members.room_id = room_members.room_id",
        )
        .bind(user)
        .bind(Utc::now())
        .bind(room)
        .bind(code)
        .bind(code)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// The member ids of `room` if it has at most `limit` members (`None` when it has more), and the
    /// number of members.
    ///
    /// # Errors
    /// Database errors.
    pub async fn member_ids_upto(
        &self,
        room: Uuid,
        limit: u32,
    ) -> StoreResult<(Option<Vec<Uuid>>, i64)> {
        let ids: Vec<Uuid> =
            sqlx::query_scalar("SELECT user_id FROM room_members WHERE room_id = ? LIMIT ?")
                .bind(room)
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.pool)
                .await?;
        if ids.len() <= limit as usize {
            let n = i64::try_from(ids.len()).unwrap_or(i64::MAX);
            return Ok((Some(ids), n));
        }
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM room_members WHERE room_id = ?")
            .bind(room)
            .fetch_one(&self.pool)
            .await?;
        Ok((None, n))
    }

    /// Which of `users` are members of which rooms, as `(user, room)` pairs (the gateway's periodic
    /// re-check of its sockets' rooms).
    ///
    /// # Errors
    /// Database errors.
    pub async fn memberships_of_users(&self, users: &[Uuid]) -> StoreResult<Vec<(Uuid, Uuid)>> {
        let mut out = Vec::new();
        for chunk in users.chunks(500) {
            let mut q = sqlx::QueryBuilder::<sqlx::MySql>::new(
                "SELECT user_id, room_id FROM room_members WHERE user_id IN (",
            );
            let mut list = q.separated(", ");
            for u in chunk {
                list.push_bind(*u);
            }
            q.push(")");
            let rows: Vec<(Uuid, Uuid)> = q.build_query_as().fetch_all(&self.pool).await?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// The ids of the rooms `user` is a member of (where presence changes are announced).
    ///
    /// # Errors
    /// Database errors.
    pub async fn room_ids_of_user(&self, user: Uuid) -> StoreResult<Vec<Uuid>> {
        Ok(
            sqlx::query_scalar("SELECT room_id FROM room_members WHERE user_id = ?")
                .bind(user)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// A page of a room's members with their roles: admins first, then by join time.
    ///
    /// # Errors
    /// Database errors.
    pub async fn members(&self, room: Uuid, limit: u32, offset: u64) -> StoreResult<Vec<Member>> {
        Ok(sqlx::query_as(
            "SELECT m.user_id, u.username, u.full_name, m.role, m.joined_at, m.read_seq, m.delivered_seq, u.last_seen \
             FROM room_members m JOIN users u ON u.id = m.user_id WHERE m.room_id = ? \
             ORDER BY m.role = 'admin' DESC, m.joined_at, m.user_id LIMIT ? OFFSET ?",
        )
        .bind(room)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Removes `user` from `room` — a leave (`actor` `None`) or a kick by `actor`, who must be an admin
    /// under the same lock — keeping the last-admin rule; deletes the room when its last member leaves.
    ///
    /// # Errors
    /// Database errors.
    pub async fn remove_member(
        &self,
        room: Uuid,
        user: Uuid,
        actor: Option<Uuid>,
    ) -> StoreResult<MembershipChange> {
        let mut tx = self.pool.begin().await?;
        let roles = lock_roles(&mut tx, room).await?;
        if let Some(refused) = roles.refusal(actor, user) {
            return Ok(refused);
        }
        if roles.0.len() == 1 {
            sqlx::query("DELETE FROM rooms WHERE id = ?")
                .bind(room)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(MembershipChange::RoomDeleted);
        }
        if roles.is_sole_admin(user) {
            return Ok(MembershipChange::LastAdmin);
        }
        sqlx::query("DELETE FROM room_members WHERE room_id = ? AND user_id = ?")
            .bind(room)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(MembershipChange::Done)
    }

    /// Sets a member's role on behalf of `actor`, who must be an admin under the same lock; refuses to
    /// demote the last admin.
    ///
    /// # Errors
    /// Database errors.
    pub async fn set_role(
        &self,
        room: Uuid,
        actor: Uuid,
        user: Uuid,
        role: &str,
    ) -> StoreResult<MembershipChange> {
        let mut tx = self.pool.begin().await?;
        let roles = lock_roles(&mut tx, room).await?;
        if let Some(refused) = roles.refusal(Some(actor), user) {
            return Ok(refused);
        }
        if role != "admin" && roles.is_sole_admin(user) {
            return Ok(MembershipChange::LastAdmin);
        }
        sqlx::query("UPDATE room_members SET role = ? WHERE room_id = ? AND user_id = ?")
            .bind(role)
            .bind(room)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(MembershipChange::Done)
    }
}

/// The (user, role) pairs of a room's members, locked for the rest of the transaction.
struct RoomRoles(Vec<(Uuid, String)>);

impl RoomRoles {
    fn role_of(&self, user: Uuid) -> Option<&str> {
        self.0
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, r)| r.as_str())
    }

    /// Why a change to `user`'s membership by `actor` (`None`: the user themselves) is refused, if it is:
    /// the actor must be an admin, the user a member.
    fn refusal(&self, actor: Option<Uuid>, user: Uuid) -> Option<MembershipChange> {
        if actor.is_some_and(|a| self.role_of(a) != Some("admin")) {
            Some(MembershipChange::NotAdmin)
        } else if self.role_of(user).is_none() {
            Some(MembershipChange::NotMember)
        } else {
            None
        }
    }

    /// `user` is an admin and no other member is.
    fn is_sole_admin(&self, user: Uuid) -> bool {
        self.role_of(user) == Some("admin")
            && self.0.iter().filter(|(_, r)| r == "admin").count() == 1
    }
}

/// Locks every member row of `room` (`FOR UPDATE`) and returns their roles.
async fn lock_roles(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    room: Uuid,
) -> StoreResult<RoomRoles> {
    let rows =
        sqlx::query_as("SELECT user_id, role FROM room_members WHERE room_id = ? FOR UPDATE")
            .bind(room)
            .fetch_all(&mut **tx)
            .await?;
    Ok(RoomRoles(rows))
}

/// Escapes `%`, `_` and `\` so user input matches literally inside a LIKE pattern.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(super::escape_like("50%_off\\"), "50\\%\\_off\\\\");
    }
}
