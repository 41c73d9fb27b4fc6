//! The fan-out's subscriber: its connection, and what it does when subscriptions are lost.
//!
//! * **Single Redis** (`SUBSCRIBE`): when the connection ends or stops answering pings, a new one is
//!   opened, every channel subscribed again, every room refilled from its log, and tokens and rooms
//!   re-checked (control messages published meanwhile are gone).
//! * **Cluster** (`SSUBSCRIBE`, one connection per master): a node connection that closes (its
//!   master died, or the link broke), a channel the server drops (its slot moved, its master became
//!   a replica) or one the keepalive finds on the wrong node does not end the subscriber. The bus
//!   names the channels that were lost; they are subscribed again in the background on the master
//!   that owns their slot now (the slot map is refreshed while a failover completes), and each room
//!   is refilled from its log once its subscription is back, so clients see neither a gap nor a
//!   duplicate. Channels that could not be subscribed yet are retried every [`RETRY`]; the rest of
//!   the fan-out goes on meanwhile.

use crate::fanout::{room_of, Cmd, Fanout};
use crate::state::Gateway;
use chat_bus::pubsub::{Incoming, Sink};
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the subscriber is pinged (and how long an answer may take).
const PUBSUB_PING: Duration = Duration::from_secs(5);

/// How often channels that could not be subscribed are tried again.
const RETRY: Duration = Duration::from_millis(500);

/// The outcome of a background re-subscription.
struct Resubscribed {
    channels: Vec<String>,
    failed: Vec<String>,
}

/// Channels waiting to be subscribed again, and whether a re-subscription is under way.
#[derive(Default)]
struct Pending {
    channels: HashSet<String>,
    in_flight: bool,
}

impl Pending {
    /// Starts a background re-subscription of the pending channels, unless one is running.
    fn start(&mut self, sink: &Sink, done: &mpsc::UnboundedSender<Resubscribed>) {
        if self.in_flight || self.channels.is_empty() {
            return;
        }
        self.in_flight = true;
        let channels: Vec<String> = self.channels.drain().collect();
        let mut sink = sink.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let (failed, err) = sink.subscribe(&channels).await;
            if let Some(e) = err {
                tracing::warn!(failed = failed.len(), error = %e, "re-subscription incomplete; retrying");
            }
            let _ = done.send(Resubscribed { channels, failed });
        });
    }
}

impl Fanout {
    /// A re-subscription finished: refill the rooms that are back, re-check tokens and rooms if the
    /// control channel is, and keep the rest pending.
    async fn on_resubscribed(&mut self, r: Resubscribed, pending: &mut Pending) {
        pending.in_flight = false;
        let failed: HashSet<&String> = r.failed.iter().collect();
        let mut control_back = false;
        for ch in &r.channels {
            if failed.contains(ch) {
                if self.wants(ch) {
                    pending.channels.insert(ch.clone());
                }
                continue;
            }
            if *ch == self.control {
                control_back = true;
            } else if let Some(room) = room_of(ch) {
                if let Some(last) = self.rooms.get(&room).map(|s| s.last_pos) {
                    self.refill(room, last, None).await;
                }
            }
        }
        if control_back {
            let gw = self.gw.clone();
            tokio::spawn(async move { gw.recheck().await });
        }
        tracing::info!(
            back = r.channels.len() - r.failed.len(),
            pending = pending.channels.len(),
            "subscriptions restored; rooms refilled from their logs"
        );
    }

    /// These subscriptions are gone (a cluster node failed or a slot moved): subscribe those still
    /// wanted again.
    fn lose(
        &self,
        channels: Vec<String>,
        pending: &mut Pending,
        done: &mpsc::UnboundedSender<Resubscribed>,
        sink: &Sink,
    ) {
        self.gw.metrics.pubsub_reconnects.fetch_add(1, Relaxed);
        pending
            .channels
            .extend(channels.into_iter().filter(|ch| self.wants(ch)));
        pending.start(sink, done);
    }
}

/// Runs the fan-out until the command channel closes.
pub async fn run(gw: Arc<Gateway>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let bus = gw.bus.clone();
    let mut f = Fanout::new(gw);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        let (mut sink, mut stream) = match bus.subscriber().await {
            Ok(s) => s,
            Err(e) => {
                f.gw.metrics.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "pub/sub connection failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let channels = f.channels();
        let (failed, err) = sink.subscribe(&channels).await;
        if let Some(e) = err {
            f.gw.metrics.redis_errors.fetch_add(1, Relaxed);
            if !bus.is_cluster() || failed.len() == channels.len() {
                tracing::warn!(error = %e, "pub/sub subscribe failed; reconnecting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            tracing::warn!(failed = failed.len(), error = %e, "some channels not subscribed yet; retrying");
        }
        backoff = Duration::from_millis(100);
        let mut pending = Pending {
            channels: failed.into_iter().collect(),
            in_flight: false,
        };
        if !first {
            f.gw.metrics.pubsub_reconnects.fetch_add(1, Relaxed);
            tracing::info!(
                rooms = f.rooms.len(),
                "pub/sub reconnected; refilling rooms from their logs"
            );
            let rooms: Vec<_> = f.rooms.iter().map(|(r, s)| (*r, s.last_pos)).collect();
            for (room, last) in rooms {
                f.refill(room, last, None).await;
            }
            let gw = f.gw.clone();
            tokio::spawn(async move { gw.recheck().await });
        }
        first = false;
        // A silently dead connection (no FIN: a partition, a dropped NAT entry) would stop the
        // fan-out for good: ping it, and reconnect when the answer does not come.
        let mut keepalive = tokio::time::interval(PUBSUB_PING);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.tick().await;
        let mut retry = tokio::time::interval(RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            for room in std::mem::take(&mut f.emptied) {
                if f.rooms.get(&room).is_some_and(|s| s.sockets.is_empty()) {
                    f.drop_room(room, &mut sink).await;
                }
            }
            tokio::select! {
                _ = keepalive.tick() => {
                    match tokio::time::timeout(PUBSUB_PING, sink.check()).await {
                        Ok(Ok(lost)) if lost.is_empty() => {}
                        Ok(Ok(lost)) => {
                            f.gw.metrics.redis_errors.fetch_add(1, Relaxed);
                            tracing::warn!(channels = lost.len(), "subscriptions lost on the cluster (a node not answering, or slots moved); subscribing again");
                            f.lose(lost, &mut pending, &done_tx, &sink);
                        }
                        _ if bus.is_cluster() => {
                            f.gw.metrics.redis_errors.fetch_add(1, Relaxed);
                            tracing::warn!("cluster subscriber check timed out");
                        }
                        _ => {
                            f.gw.metrics.redis_errors.fetch_add(1, Relaxed);
                            tracing::warn!("pub/sub connection not answering pings; reconnecting");
                            break;
                        }
                    }
                }
                _ = retry.tick(), if !pending.channels.is_empty() => pending.start(&sink, &done_tx),
                Some(r) = done_rx.recv() => {
                    f.on_resubscribed(r, &mut pending).await;
                }
                cmd = rx.recv() => match cmd {
                    Some(cmd) => f.on_cmd(cmd, &mut sink).await,
                    None => return,
                },
                msg = stream.next() => match msg {
                    Some(Incoming::Message(msg)) => {
                        // Borrowed from the message: nothing is copied per event.
                        let channel = msg.get_channel_name();
                        let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) else { continue };
                        if channel == f.control {
                            f.on_control(text, &mut sink).await;
                        } else if let Some(room) = room_of(channel) {
                            f.on_room_message(room, text).await;
                        }
                    }
                    Some(Incoming::Unsubscribed(channel)) => {
                        // Our own unsubscribe of a room we left; a join since then wants it back.
                        if f.wants(&channel) {
                            pending.channels.insert(channel);
                            pending.start(&sink, &done_tx);
                        }
                    }
                    Some(Incoming::Lost(lost)) => {
                        f.gw.metrics.redis_errors.fetch_add(1, Relaxed);
                        tracing::warn!(channels = lost.len(), "a cluster node connection closed or dropped channels; subscribing again");
                        f.lose(lost, &mut pending, &done_tx, &sink);
                    }
                    None => {
                        f.gw.metrics.redis_errors.fetch_add(1, Relaxed);
                        tracing::warn!("pub/sub connection lost; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}
