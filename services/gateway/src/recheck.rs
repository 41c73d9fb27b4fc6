//! The safety net under control messages: they travel over pub/sub, which drops messages while a
//! gateway reconnects. Every few heartbeats, and after every pub/sub reconnect, each local socket's
//! token is checked against the revocation list and its rooms against MySQL; a revoked token's
//! socket is disconnected, a room the user no longer belongs to is left (with a `user_left` for
//! themselves, as a kick would have sent).

use crate::state::Gateway;
use deadpool_redis::redis;
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use uuid::Uuid;

impl Gateway {
    pub async fn recheck(&self) {
        let sockets = self.socket_list();
        if sockets.is_empty() {
            return;
        }
        // Rooms as they are before MySQL is asked: a room joined after this snapshot is not judged
        // against a membership list read before the join committed.
        let rooms: Vec<Vec<Uuid>> = sockets.iter().map(|s| s.data().room_list()).collect();

        let keys = self.bus.keys();
        let revoked: Vec<bool> = match async {
            let mut c = self.bus.bulk_conn().await?;
            let mut out = Vec::with_capacity(sockets.len());
            for chunk in sockets.chunks(500) {
                let mut pipe = redis::pipe();
                for s in chunk {
                    pipe.cmd("EXISTS")
                        .arg(keys.revoked_jti(s.data().user, s.data().jti));
                }
                let v: Vec<bool> = pipe.query_async(&mut *c).await?;
                out.extend(v);
            }
            anyhow::Ok(out)
        }
        .await
        {
            Ok(v) => v,
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
