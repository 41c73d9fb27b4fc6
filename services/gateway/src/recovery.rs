//! Connection state recovery across gateways: sessions live in Redis (`P:v1:sio:<pid>`), so a client
//! whose gateway died reconnects to any other one and gets its socket back. Sessions are saved at
//! connect, again whenever the socket joins or leaves a room (before the ack, so a gateway killed right
//! after a join still hands the room over), refreshed on every presence heartbeat, and expire
//! `RECOVERY_WINDOW_SECS` after the last save.

use chat_bus::Bus;
use deadpool_redis::redis;
use serde::{Deserialize, Serialize};
use sio::{BoxFuture, RecoveryStore, Session, Sid};
use std::time::Duration;

pub struct RedisRecovery {
    bus: Bus,
    ttl: Duration,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    sid: String,
    pid: String,
    nsp: String,
    state: serde_json::Value,
}

impl RedisRecovery {
    pub fn new(bus: Bus, ttl: Duration) -> Self {
        Self { bus, ttl }
    }

    fn key(&self, pid: Sid) -> String {
        format!("{}:sio:{pid}", self.bus.keys().prefix())
    }

    /// The `PEXPIRE` that keeps a saved session alive for another window (its reply is 0 when the
    /// session is gone — Redis lost it — and it must be saved again).
    pub fn refresh_cmd(&self, pipe: &mut redis::Pipeline, pid: Sid) {
        pipe.cmd("PEXPIRE")
            .arg(self.key(pid))
            .arg(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
    }

    /// The `SET` that saves `s`, for pipelining many at once.
    pub fn save_cmd(&self, pipe: &mut redis::Pipeline, s: &Session) {
        let v = Stored {
            sid: s.sid.to_string(),
            pid: s.pid.to_string(),
            nsp: s.nsp.clone(),
            state: s.state.clone(),
        };
        pipe.cmd("SET")
            .arg(self.key(s.pid))
            .arg(serde_json::to_string(&v).unwrap_or_default())
            .arg("PX")
            .arg(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX))
            .ignore();
    }
}

impl RecoveryStore for RedisRecovery {
    fn save(&self, session: Session) -> BoxFuture<()> {
        let mut pipe = redis::pipe();
        self.save_cmd(&mut pipe, &session);
        let bus = self.bus.clone();
        Box::pin(async move {
            let res: anyhow::Result<()> = async {
                let mut c = bus.conn().await?;
                let () = pipe.query_async(&mut *c).await?;
                Ok(())
            }
            .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "could not save a recovery session");
            }
        })
    }

    fn take(&self, pid: Sid) -> BoxFuture<Option<Session>> {
        let key = self.key(pid);
        let bus = self.bus.clone();
        Box::pin(async move {
            let res: anyhow::Result<Option<String>> = async {
                let mut c = bus.conn().await?;
                Ok(redis::cmd("GETDEL").arg(&key).query_async(&mut *c).await?)
            }
            .await;
            let text = match res {
                Ok(t) => t?,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read a recovery session");
                    return None;
                }
            };
            let s: Stored = serde_json::from_str(&text).ok()?;
            Some(Session {
                sid: Sid::parse(&s.sid)?,
                pid: Sid::parse(&s.pid)?,
                nsp: s.nsp,
                state: s.state,
            })
        })
    }

    fn remove(&self, pid: Sid) -> BoxFuture<()> {
        let key = self.key(pid);
        let bus = self.bus.clone();
        Box::pin(async move {
            if let Ok(mut c) = bus.conn().await {
                let _: Result<i64, _> = redis::cmd("DEL").arg(&key).query_async(&mut *c).await;
            }
        })
    }
}
