//! The safety net under control messages: they travel over pub/sub, which drops messages while a
//! gateway reconnects. Every few heartbeats, and after every pub/sub reconnect, the local sockets'
//! tokens are checked against what the revocation log gained since the last look (one read per
//! gateway, not one per socket) and their rooms against MySQL; a revoked token's
//! socket is disconnected, a room the user no longer belongs to is left (with a `user_left` for
//! themselves, as a kick would have sent).

use crate::state::Gateway;
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use uuid::Uuid;

/// How far back each read of the revocation log reaches before where the last one ended, so an
/// entry written in the same millisecond as the last read is not missed.
const OVERLAP_MS: i64 = 5_000;

/// How far back the first read reaches (a token revoked just before this gateway started, whose
/// socket was accepted before the revocation landed).
const FIRST_LOOK_MS: i64 = 60_000;

impl Gateway {
    /// The tokens revoked since the last look (one read of the revocation log, however many
    /// sockets are here).
    async fn revoked_since_last_look(&self) -> anyhow::Result<HashSet<(Uuid, Uuid)>> {
        let last = self.revocations_read.load(Relaxed);
        let since = if last == 0 {
            // The log's own clock is read by the same call: start from "a minute ago" there.
            let (now, _) = self.bus.revocations_since(i64::MAX).await?;
            now - FIRST_LOOK_MS
        } else {
            last - OVERLAP_MS
        };
        let (now, pairs) = self.bus.revocations_since(since).await?;
        self.revocations_read.store(now, Relaxed);
        Ok(pairs.into_iter().collect())
    }

    pub async fn recheck(&self) {
        let sockets = self.socket_list();
        if sockets.is_empty() {
            return;
        }
        // Rooms as they are before MySQL is asked: a room joined after this snapshot is not judged
        // against a membership list read before the join committed.
        let rooms: Vec<Vec<Uuid>> = sockets.iter().map(|s| s.data().room_list()).collect();

        let revoked: Vec<bool> = match self.revoked_since_last_look().await {
            Ok(set) => sockets
                .iter()
                .map(|s| set.contains(&(s.data().user, s.data().jti)))
                .collect(),
            Err(e) => {
                self.metrics.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "re-check: revocations unavailable");
                vec![false; sockets.len()]
            }
        };
        for (s, r) in sockets.iter().zip(&revoked) {
            if *r {
                tracing::info!(user = %s.data().user, "re-check: token revoked: disconnecting");
                s.disconnect();
            }
        }

        let users: Vec<Uuid> = sockets
            .iter()
            .zip(&rooms)
            .filter(|(_, r)| !r.is_empty())
            .map(|(s, _)| s.data().user)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if users.is_empty() {
            return;
        }
        let members: HashSet<(Uuid, Uuid)> = match self.store.memberships_of_users(&users).await {
            Ok(v) => v.into_iter().collect(),
            Err(e) => {
                self.metrics.mysql_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "re-check: memberships unavailable");
                return;
            }
        };
        for ((s, rooms), r) in sockets.iter().zip(&rooms).zip(&revoked) {
            if *r {
                continue;
            }
            let d = s.data();
            for room in rooms {
                if !members.contains(&(d.user, *room)) && d.rooms().remove(room) {
                    tracing::info!(user = %d.user, room = %room, "re-check: no longer a member: leaving the room");
                    self.members.invalidate(*room, d.user);
                    self.fanout.leave(*room, s.id());
                    self.typing.stop(s, *room);
                    let _ = s.emit("user_left", &(json!({"roomId": room, "userId": d.user}),));
                }
            }
        }
    }
}
