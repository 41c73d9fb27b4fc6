//! Subscribing to channels in either mode.
//!
//! * **Single Redis**: classic `SUBSCRIBE` on a connection of its own; the stream ends when that
//!   connection is lost, and the caller opens a new subscriber (and refills what it missed).
//! * **Cluster**: sharded pub/sub. `SSUBSCRIBE` goes to the node that owns the channel's slot, so a
//!   message published with `SPUBLISH` crosses only that shard, never the whole cluster bus. The
//!   cluster connection (RESP3, pushes into one channel) holds a connection per node; the stream
//!   reports what a subscriber must act on: a node connection that closed ([`Incoming::Lost`]: its
//!   channels may be gone — a master died, or the connection broke) and a channel the server dropped
//!   ([`Incoming::Unsubscribed`]: its slot moved to another node, or its master became a replica).
//!   The caller subscribes again (the connection routes the new `SSUBSCRIBE` by the current slot
//!   map, refreshing it and retrying while a failover completes) and refills the gap from the room
//!   logs.

use crate::conn::{cluster_builder, Client, REDIS_TIMEOUT};
use crate::{Bus, BusError, BusResult};
use deadpool_redis::redis::{
    self,
    aio::{PubSubSink, PubSubStream},
    cluster_async::ClusterConnection,
    Msg, PushInfo, PushKind, Value,
};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

/// Where subscriptions are made (clones share the connection).
#[derive(Clone)]
pub enum Sink {
    Single(PubSubSink),
    Cluster(ClusterConnection),
}

/// What arrives on a subscriber.
pub enum Stream {
    Single(PubSubStream),
    Cluster(mpsc::UnboundedReceiver<PushInfo>),
}

/// One thing a subscriber receives.
pub enum Incoming {
    /// A message on a subscribed channel.
    Message(Msg),
    /// The server dropped this channel's subscription (a cluster slot moved, or our own
    /// unsubscribe).
    Unsubscribed(String),
    /// A node connection of the cluster closed: any subscription may be gone.
    Lost,
}

impl Bus {
    /// A new subscriber: subscriptions are made on the [`Sink`], messages arrive on the [`Stream`].
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn subscriber(&self) -> BusResult<(Sink, Stream)> {
        match &self.client {
            Client::Single(client) => {
                let (sink, stream) = client.get_async_pubsub().await?.split();
                Ok((Sink::Single(sink), Stream::Single(stream)))
            }
            Client::Cluster(nodes) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let conn = cluster_builder(nodes)
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(tx)
                    .response_timeout(REDIS_TIMEOUT)
                    .build()?
                    .get_async_connection()
                    .await?;
                Ok((Sink::Cluster(conn), Stream::Cluster(rx)))
            }
        }
    }
}

impl Sink {
    /// Subscribes `channels`. Returns those that could not be subscribed (all of them when a single
    /// Redis failed; on a cluster only those of the slots whose node did not answer), with the
    /// first error.
    pub async fn subscribe(&mut self, channels: &[String]) -> (Vec<String>, Option<BusError>) {
        if channels.is_empty() {
            return (Vec::new(), None);
        }
        match self {
            Self::Single(s) => match s.subscribe(channels).await {
                Ok(()) => (Vec::new(), None),
                Err(e) => (channels.to_vec(), Some(e.into())),
            },
            Self::Cluster(c) => {
                // One command per channel: SSUBSCRIBE of several channels must stay in one slot.
                let calls = channels.iter().map(|ch| {
                    let mut c = c.clone();
                    async move { c.ssubscribe(ch).await }
                });
                let results = futures_util::future::join_all(calls).await;
                let mut failed = Vec::new();
                let mut first = None;
                for (ch, r) in channels.iter().zip(results) {
                    if let Err(e) = r {
                        failed.push(ch.clone());
                        first.get_or_insert(BusError::from(e));
                    }
                }
                (failed, first)
            }
        }
    }

    /// Unsubscribes one channel.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn unsubscribe(&mut self, channel: &str) -> BusResult<()> {
        match self {
            Self::Single(s) => Ok(s.unsubscribe(channel).await?),
            Self::Cluster(c) => Ok(c.sunsubscribe(channel).await?),
        }
    }

    /// A round trip on the subscriber's connection (on a cluster, on every node's), to tell a
    /// silently dead connection from a quiet one.
    ///
    /// # Errors
    /// The connection (or a node) did not answer.
    pub async fn ping(&mut self) -> BusResult<()> {
        match self {
            Self::Single(s) => {
                let _: Value = s.ping().await?;
            }
            Self::Cluster(c) => {
                let _: Value = redis::cmd("PING").query_async(c).await?;
            }
        }
        Ok(())
    }
}

impl Stream {
    /// The next message or event; `None` when the subscriber's connection is gone for good (a single
    /// Redis: open a new subscriber).
    pub async fn next(&mut self) -> Option<Incoming> {
        match self {
            Self::Single(s) => s.next().await.map(Incoming::Message),
            Self::Cluster(rx) => loop {
                let push = rx.recv().await?;
                match push.kind {
                    PushKind::SMessage | PushKind::Message => {
                        if let Some(m) = Msg::from_push_info(push) {
                            return Some(Incoming::Message(m));
                        }
                    }
                    PushKind::SUnsubscribe => {
                        if let Some(Value::BulkString(ch)) = push.data.first() {
                            return Some(Incoming::Unsubscribed(
                                String::from_utf8_lossy(ch).into_owned(),
                            ));
                        }
                    }
                    PushKind::Disconnection => return Some(Incoming::Lost),
                    _ => {}
                }
            },
        }
    }
}
