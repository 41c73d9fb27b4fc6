//! Connection state recovery across gateways: sessions live in Redis (`P:v1:sio:<pid>`), so a client
//! whose gateway died reconnects to any other one and gets its socket back.
//!
//! Nothing is written per socket between its connect and its disconnect unless its rooms change:
//! * while the socket is connected its session is kept for [`LIVE_TTL`]: saved at connect, again
//!   whenever it joins or leaves a room (before the ack, so a gateway killed right after a join
//!   still hands the room over), and by the heartbeat once the last save is [`RESAVE_AFTER`] old;
//! * when the socket drops for a recoverable reason its session is saved for the recovery window
//!   (`RECOVERY_WINDOW_SECS`);
//! * when its gateway dies, the survivor that cleans up after it cuts the session to the recovery
//!   window.

use chat_bus::Bus;
use deadpool_redis::redis;
use serde::{Deserialize, Serialize};
use sio::{BoxFuture, RecoveryStore, Session, Sid};
use std::time::Duration;

/// How long a connected socket's session is kept.
pub const LIVE_TTL: Duration = Duration::from_secs(24 * 3600);

/// How old a connected socket's last save may grow before the heartbeat saves it again.
pub const RESAVE_AFTER: Duration = Duration::from_secs(12 * 3600);

pub struct RedisRecovery {
    bus: Bus,
    window: Duration,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    sid: String,
    pid: String,
    nsp: String,
    state: serde_json::Value,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisRecovery {
    pub fn new(bus: Bus, window: Duration) -> Self {
        Self { bus, window }
    }

    fn key(&self, pid: Sid) -> String {
        format!("{}:sio:{pid}", self.bus.keys().prefix())
    }

    /// The `SET` that saves `s` for `ttl`.
    fn set_cmd(&self, pipe: &mut redis::Pipeline, s: &Session, ttl: Duration) {
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
            .arg(ms(ttl));
    }

    /// The `SET` that saves a connected socket's session (for [`LIVE_TTL`]), for pipelining.
    pub fn save_live_cmd(&self, pipe: &mut redis::Pipeline, s: &Session) {
        self.set_cmd(pipe, s, LIVE_TTL);
    }

    /// The `PEXPIRE` that gives the session of a socket that is gone (its gateway died) the
    /// recovery window.
    pub fn expire_cmd(&self, pipe: &mut redis::Pipeline, pid: Sid) {
        pipe.cmd("PEXPIRE").arg(self.key(pid)).arg(ms(self.window));
    }

    /// Saves a connected socket's session.
    pub fn save_live(&self, session: &Session) -> BoxFuture<()> {
        let mut pipe = redis::pipe();
        self.save_live_cmd(&mut pipe, session);
        self.run(pipe)
    }

    fn run(&self, pipe: redis::Pipeline) -> BoxFuture<()> {
        let bus = self.bus.clone();
        Box::pin(async move {
            let res: anyhow::Result<()> = async {
                let mut c = bus.conn().await?;
                let _: Vec<redis::Value> = c.spread(&pipe).await?;
                Ok(())
            }
            .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "could not save a recovery session");
            }
        })
    }
}

impl RecoveryStore for RedisRecovery {
    /// The socket dropped for a recoverable reason: keep its session for the recovery window.
    fn save(&self, session: Session) -> BoxFuture<()> {
        let mut pipe = redis::pipe();
        self.set_cmd(&mut pipe, &session, self.window);
        self.run(pipe)
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
