//! Control messages: how the API tells every gateway that membership or a token changed, so live
//! sockets follow at once. They travel on one channel all gateways subscribe to (`P:v1:ctl`), next to
//! the user-facing event the API publishes on the room channel (`user_joined`, `user_left`,
//! `room_deleted`, `role_changed`).

use crate::wire::volatile;
use crate::{Realtime, RtResult};
use deadpool_redis::redis;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A change live sockets must follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Control {
    /// `user` became a member of `room` (membership caches must forget a cached refusal).
    MemberAdded { room: Uuid, user: Uuid },
    /// `user` left or was kicked from `room`: their sockets leave the room's channel at once.
    MemberRemoved { room: Uuid, user: Uuid },
    /// `user`'s role in `room` changed.
    RoleChanged { room: Uuid, user: Uuid },
    /// The room is gone: every socket leaves it.
    RoomDeleted { room: Uuid },
    /// An access token was revoked (logout): the sockets it authenticated are disconnected. Without
    /// `jti`, every socket of the user is.
    TokenRevoked { user: Uuid, jti: Option<Uuid> },
}

impl Realtime {
    /// Publishes a control message, and the room event clients see for it, in one round trip (room
    /// event first, so a removed user's sockets still get their own `user_left`).
    ///
    /// # Errors
    /// Redis failures.
    pub async fn publish_control(&self, c: &Control) -> RtResult<()> {
        let now = crate::wire::iso(&chrono::Utc::now());
        let room_event = match c {
            Control::MemberAdded { room, user } => Some((
                *room,
                volatile(
                    "user_joined",
                    &serde_json::json!({"roomId": room, "userId": user, "at": now}),
                    None,
                ),
            )),
            Control::MemberRemoved { room, user } => Some((
                *room,
                volatile(
                    "user_left",
                    &serde_json::json!({"roomId": room, "userId": user, "at": now}),
                    None,
                ),
            )),
            Control::RoleChanged { room, user } => Some((
                *room,
                volatile(
                    "role_changed",
                    &serde_json::json!({"roomId": room, "userId": user}),
                    None,
                ),
            )),
            Control::RoomDeleted { room } => Some((
                *room,
                volatile("room_deleted", &serde_json::json!({"roomId": room}), None),
            )),
            Control::TokenRevoked { .. } => None,
        };
        let publish = self.bus.publish_command();
        let mut pipe = redis::pipe();
        if let Some((room, text)) = room_event {
            pipe.cmd(publish)
                .arg(self.room(room).channel())
                .arg(text)
                .ignore();
        }
        pipe.cmd(publish)
            .arg(self.control_channel())
            .arg(serde_json::to_string(c).unwrap_or_default())
            .ignore();
        let mut conn = self.bus.conn().await?;
        if conn.is_cluster() {
            // The two channels live on different shards: publish the room event first, so that
            // gateways see it before the control message acts on the sockets.
            for cmd in pipe.cmd_iter() {
                let _: redis::Value = cmd.query_async(&mut *conn).await?;
            }
        } else {
            let () = pipe.query_async(&mut *conn).await?;
        }
        Ok(())
    }

    /// Publishes a volatile event to a room (typing, presence): not logged, not persisted, never
    /// replayed. `exclude`'s sockets do not get it.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn publish_volatile<T: Serialize>(
        &self,
        room: Uuid,
        event: &str,
        data: &T,
        exclude: Option<Uuid>,
    ) -> RtResult<()> {
        let mut conn = self.bus.conn().await?;
        let _: i64 = redis::cmd(self.bus.publish_command())
            .arg(self.room(room).channel())
            .arg(volatile(event, data, exclude))
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }

    /// [`Realtime::publish_volatile`] of one event to many rooms, in one round trip (on a cluster,
    /// one per room, all at once).
    ///
    /// # Errors
    /// Redis failures.
    pub async fn publish_volatile_many<T: Serialize>(
        &self,
        rooms: &[Uuid],
        event: &str,
        data: &T,
    ) -> RtResult<()> {
        if rooms.is_empty() {
            return Ok(());
        }
        let text = volatile(event, data, None);
        let mut pipe = redis::pipe();
        for r in rooms {
            pipe.cmd(self.bus.publish_command())
                .arg(self.room(*r).channel())
                .arg(&text);
        }
        let mut conn = self.bus.conn().await?;
        let _: Vec<redis::Value> = conn.spread(&pipe).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip_as_tagged_json() {
        let c = Control::TokenRevoked {
            user: Uuid::nil(),
            jti: None,
        };
        let s = serde_json::to_string(&c).expect("json");
        assert!(s.contains(r#""k":"token_revoked""#), "{s}");
        assert_eq!(serde_json::from_str::<Control>(&s).expect("parse"), c);
    }
}
