//! Subscribing to channels in either mode.
//!
//! * **Single Redis**: classic `SUBSCRIBE` on a connection of its own; the stream ends when that
//!   connection is lost, and the caller opens a new subscriber (and refills what it missed).
//! * **Cluster**: sharded pub/sub ([`crate::shards`]). `SSUBSCRIBE` goes to the master that owns
//!   the channel's slot, so a message published with `SPUBLISH` crosses only that shard, never the
//!   whole cluster bus. The stream reports every subscription that was lost
//!   ([`Incoming::Lost`], with its channels: a master died, a link broke, a slot moved), and
//!   [`Sink::check`] finds the ones lost silently; the caller subscribes them again and refills the
//!   gap from the room logs.

use crate::conn::Client;
use crate::shards::Shards;
use crate::{Bus, BusError, BusResult};
use deadpool_redis::redis::{
    aio::{PubSubSink, PubSubStream},
    Msg, PushInfo, Value,
};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

/// Where subscriptions are made (clones share the connection).
#[derive(Clone)]
pub enum Sink {
    Single(PubSubSink),
    Cluster(Shards),
}

/// What arrives on a subscriber.
pub enum Stream {
    Single(PubSubStream),
    Cluster {
        rx: mpsc::UnboundedReceiver<(u64, PushInfo)>,
        shards: Shards,
    },
}

/// One thing a subscriber receives.
pub enum Incoming {
    /// A message on a subscribed channel.
    Message(Msg),
    /// Our own unsubscribe of this channel is done.
    Unsubscribed(String),
    /// On a cluster: these channels are no longer subscribed (their node connection closed, or
    /// the server dropped them). Subscribe them again and refill what they missed.
    Lost(Vec<String>),
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
                let (shards, rx) = Shards::new(nodes)?;
                Ok((
                    Sink::Cluster(shards.clone()),
                    Stream::Cluster { rx, shards },
                ))
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
            Self::Cluster(c) => c.subscribe(channels).await,
        }
    }

    /// Unsubscribes one channel.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn unsubscribe(&mut self, channel: &str) -> BusResult<()> {
        match self {
            Self::Single(s) => Ok(s.unsubscribe(channel).await?),
            Self::Cluster(c) => c.unsubscribe(channel).await,
        }
    }

    /// The keepalive. A single Redis: a round trip, to tell a silently dead connection from a
    /// quiet one (an error: open a new subscriber). A cluster: [`Shards::check`], returning the
    /// channels to subscribe again.
    ///
    /// # Errors
    /// The single Redis did not answer.
    pub async fn check(&mut self) -> BusResult<Vec<String>> {
        match self {
            Self::Single(s) => {
                let _: Value = s.ping().await?;
                Ok(Vec::new())
            }
            Self::Cluster(c) => Ok(c.check().await),
        }
    }
}

impl Stream {
    /// The next message or event; `None` when the subscriber's connection is gone for good (a single
    /// Redis: open a new subscriber).
    pub async fn next(&mut self) -> Option<Incoming> {
        match self {
            Self::Single(s) => s.next().await.map(Incoming::Message),
            Self::Cluster { rx, shards } => loop {
                let (node, push) = rx.recv().await?;
                if let Some(incoming) = shards.on_push(node, push) {
                    return Some(incoming);
                }
            },
        }
    }
}
