//! One shard's consumer loop: read a batch from the shard's stream in the `persist` group, apply it to
//! MySQL, then acknowledge it.
//!
//! Each loop owns a dedicated Redis connection, because `XREADGROUP … BLOCK` holds its connection
//! until entries arrive. The order of one iteration:
//!
//! 1. take over entries idle on dead consumers (`XAUTOCLAIM`, every `claim_idle / 2`);
//! 2. after a start, re-read this consumer's own pending entries (a restarted pod keeps its name);
//! 3. read new entries, blocking; once the first arrives, keep reading until the batch has
//!    `batch_size` entries or `batch_max_wait` has passed;
//! 4. decode; undecodable entries are set aside for the dead-letter stream;
//! 5. apply the batch in one transaction, retrying with capped exponential back-off and full jitter
//!    while MySQL is unreachable (nothing is acknowledged meanwhile, so nothing is lost), isolating
//!    entries MySQL refuses;
//! 6. in one `MULTI`: `XADD` the dead letters to `P:v1:{s}:dead`, `XACK` everything handled;
//! 7. raise the persisted watermarks of the batch's rooms ([`crate::watermark`]): one script, best
//!    effort (a failure leaves the candidates for the next batch).
//!
//! With tracing export on, steps 5 and 6 run in a span `chat.persist_batch` linked to the span of
//! every entry's producer (the envelope's `traceparent`, at most 128 links).
//!
//! A crash anywhere before step 6 leaves the entries pending: the same consumer re-reads them after a
//! restart (step 2), another one takes them over (step 1), and replaying them is harmless because every
//! write is idempotent. A stop request is honoured between batches, so the current batch is finished.

use crate::apply::{apply_isolating, describe, Applied, Item};
use crate::metrics::Metrics;
use crate::streams::{auto_claim, id_millis, read_group, Body, RawEntry};
use crate::watermark::Watermarks;
use chat_bus::keys::PERSIST_GROUP;
use chat_bus::stream::{decode, DecodeError, Event, ENVELOPE_VERSION};
use chat_bus::Keys;
use chat_config::WorkerConfig;
use chat_store::Store;
use deadpool_redis::redis::{self, RedisResult};
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tracing::Instrument as _;
use uuid::Uuid;

/// What every shard loop of the process shares.
pub struct Shared {
    pub store: Store,
    pub bus: chat_bus::Bus,
    pub keys: Keys,
    pub settings: WorkerConfig,
    pub metrics: Arc<Metrics>,
}

/// A bus error as the Redis error it wraps.
fn bus_error(e: chat_bus::BusError) -> redis::RedisError {
    match e {
        chat_bus::BusError::Redis(e) => e,
        chat_bus::BusError::Config(m) => {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "redis", m))
        }
    }
}

/// Capped exponential back-off with full jitter (each delay uniform in [d/2, d]).
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);

    pub fn new(max: Duration) -> Self {
        Self {
            next: Self::FIRST.min(max),
            max,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = d / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST.min(self.max);
    }
}

/// Sleeps for `d` unless a stop is requested first. Returns whether to stop.
pub async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let woke_by_stop = tokio::select! {
        () = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    woke_by_stop || *stop.borrow()
}

struct Dead {
    id: String,
    raw: Vec<u8>,
    reason: String,
}

/// The consumer loop of one shard.
pub struct ShardLoop {
    shared: Arc<Shared>,
    shard: u16,
    key: String,
    dead_key: String,
    conn: Option<chat_bus::Conn>,
    /// Where re-reading this consumer's own pending entries has got to; `None` once done.
    own_cursor: Option<String>,
    claim_cursor: String,
    next_claim: Instant,
    /// Edits and deletes of messages not in MySQL yet, retried with the next batches.
    deferred: Vec<Item>,
    /// Rooms' persisted watermarks waiting to be raised.
    marks: Watermarks,
}

/// The loop stopped while a batch could not be finished (MySQL or Redis down); its entries stay
/// pending in Redis.
struct Stopped;

impl ShardLoop {
    pub fn new(shared: Arc<Shared>, shard: u16) -> Self {
        let key = shared.keys.stream(shard);
        let dead_key = shared.keys.dead_letter(shard);
        Self {
            shared,
            shard,
            key,
            dead_key,
            conn: None,
            own_cursor: Some("0".into()),
            claim_cursor: "0-0".into(),
            next_claim: Instant::now(),
            deferred: Vec::new(),
            marks: Watermarks::default(),
        }
    }

    /// Runs until `stop` turns true, finishing the batch in hand.
    #[tracing::instrument(name = "shard", skip_all, fields(shard = self.shard))]
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(self.shared.settings.retry_max_backoff);
        while !*stop.borrow() {
            let entries = match self.fetch().await {
                Ok(e) => e,
                Err(e) => {
                    self.shared.metrics.redis_errors.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, "redis error; reconnecting");
                    self.conn = None;
                    // Entries read just before the error are pending on this consumer: re-read them.
                    self.own_cursor = Some("0".into());
                    if pause(&mut stop, backoff.next_delay()).await {
                        break;
                    }
                    continue;
                }
            };
            backoff.reset();
            if entries.is_empty() && self.deferred.is_empty() {
                // Idle: watermarks held back by another consumer's pending entries may pass now.
                self.raise_marks().await;
                continue;
            }
            if self.process(entries, &mut stop).await.is_err() {
                tracing::info!("stopping with a batch unfinished; its entries stay pending");
                break;
            }
        }
        tracing::debug!("shard loop stopped");
    }

    async fn connection(&mut self) -> RedisResult<chat_bus::Conn> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        // Bounded waits: without a response timeout a Redis host that vanishes without closing the TCP
        // connection (failover, node loss) would hang this shard's blocking XREADGROUP forever. Our
        // blocking reads wait at most ~0.5 s, so 10 s only ever fires on a dead connection.
        let mut c = self
            .shared
            .bus
            .dedicated(Duration::from_secs(10))
            .await
            .map_err(bus_error)?;
        // Create the group (and the stream) if this is the first worker ever, reading from the start.
        let created: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.key)
            .arg(PERSIST_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut c)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => return Err(e),
            _ => {}
        }
        self.conn = Some(c.clone());
        Ok(c)
    }

    async fn fetch(&mut self) -> RedisResult<Vec<RawEntry>> {
        let mut conn = self.connection().await?;
        let s = &self.shared.settings;
        let n = s.batch_size;
        let consumer = s.consumer.as_str();
        let mut out = Vec::new();
        let now = Instant::now();

        if now >= self.next_claim {
            let (cursor, claimed) = auto_claim(
                &mut conn,
                &self.key,
                PERSIST_GROUP,
                consumer,
                s.claim_idle,
                &self.claim_cursor,
                n,
            )
            .await?;
            if !claimed.is_empty() {
                tracing::info!(
                    entries = claimed.len(),
                    "took over entries idle on another consumer"
                );
                self.shared
                    .metrics
                    .claimed
                    .fetch_add(claimed.len() as u64, Relaxed);
            }
            out.extend(claimed);
            self.next_claim = if cursor == "0-0" {
                now + (s.claim_idle / 2).clamp(Duration::from_millis(50), Duration::from_secs(5))
            } else {
                now
            };
            self.claim_cursor = cursor;
        }

        if let Some(from) = self.own_cursor.take() {
            if out.len() < n {
                let mine = read_group(
                    &mut conn,
                    &self.key,
                    PERSIST_GROUP,
                    consumer,
                    n - out.len(),
                    None,
                    &from,
                )
                .await?;
                if let Some(last) = mine.last() {
                    self.own_cursor = Some(last.id.clone());
                }
                out.extend(mine);
            } else {
                self.own_cursor = Some(from);
            }
        }

        if out.len() < n {
            let block = match (out.is_empty(), self.deferred.is_empty()) {
                (true, true) => Some(Duration::from_millis(500)),
                (true, false) => Some(Duration::from_millis(100)),
                (false, _) => None,
            };
            let fresh = read_group(
                &mut conn,
                &self.key,
                PERSIST_GROUP,
                consumer,
                n - out.len(),
                block,
                ">",
            )
            .await?;
            let got = !fresh.is_empty();
            out.extend(fresh);
            if got && !s.batch_max_wait.is_zero() {
                let deadline = Instant::now() + s.batch_max_wait;
                while out.len() < n {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    let more = read_group(
                        &mut conn,
                        &self.key,
                        PERSIST_GROUP,
                        consumer,
                        n - out.len(),
                        Some(left),
                        ">",
                    )
                    .await?;
                    if more.is_empty() {
                        break;
                    }
                    out.extend(more);
                }
            }
        }
        Ok(out)
    }

    async fn process(
        &mut self,
        entries: Vec<RawEntry>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        let shared = Arc::clone(&self.shared);
        let now = Instant::now();
        let mut items = std::mem::take(&mut self.deferred);
        let mut known: HashSet<String> = items.iter().map(|i| i.id.clone()).collect();
        let mut dead = Vec::new();
        let mut acks = Vec::new();
        for e in entries {
            if !known.insert(e.id.clone()) {
                continue;
            }
            match e.body {
                Body::Gone => acks.push(e.id),
                Body::NoPayload => dead.push(Dead {
                    id: e.id,
                    raw: Vec::new(),
                    reason: "entry has no field e".into(),
                }),
                Body::Payload(raw) => match decode(&raw) {
                    Ok(env) => items.push(Item {
                        id: e.id,
                        raw,
                        env,
                        first_seen: now,
                    }),
                    // Written by a newer producer: leave it pending for a newer worker, which will
                    // take it over (XAUTOCLAIM), rather than dead-letter a valid entry.
                    Err(DecodeError::Version(v)) if v > u64::from(ENVELOPE_VERSION) => {
                        shared.metrics.newer_version.fetch_add(1, Relaxed);
                        tracing::warn!(entry = %e.id, version = v, "entry of a newer envelope version left pending");
                    }
                    Err(err) => dead.push(Dead {
                        id: e.id,
                        raw,
                        reason: err.to_string(),
                    }),
                },
            }
        }

        // With tracing on, the batch is one span linked to the request of every entry that carried
        // a traceparent (a root span: the shard loop's own span never ends).
        let span = if chat_telemetry::enabled() {
            let span = tracing::info_span!(
                parent: None,
                "chat.persist_batch",
                shard = self.shard,
                entries = items.len(),
                dead = dead.len(),
                links = tracing::field::Empty,
            );
            let links = chat_telemetry::add_links(
                &span,
                items.iter().filter_map(|i| i.env.traceparent.as_deref()),
            );
            span.record("links", links);
            span
        } else {
            tracing::Span::none()
        };
        self.persist(items, dead, acks, now, stop)
            .instrument(span)
            .await
    }

    /// Applies decoded items, then dead-letters and acknowledges what is done.
    async fn persist(
        &mut self,
        items: Vec<Item>,
        mut dead: Vec<Dead>,
        mut acks: Vec<String>,
        now: Instant,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        let shared = Arc::clone(&self.shared);
        let applied = if items.is_empty() {
            Applied::default()
        } else {
            let mut backoff = Backoff::new(shared.settings.retry_max_backoff);
            loop {
                match apply_isolating(&shared.store, &shared.metrics, &items).await {
                    Ok(a) => break a,
                    Err(e) => {
                        shared.metrics.retries.fetch_add(1, Relaxed);
                        tracing::warn!(error = %describe(&e), entries = items.len(), "cannot write the batch to MySQL; will retry it");
                        if pause(stop, backoff.next_delay()).await {
                            return Err(Stopped);
                        }
                    }
                }
            }
        };

        // Every new message is stored or dead-lettered below: candidates for the room's watermark
        // once acknowledged.
        let handled: Vec<(Uuid, String, i64)> = items
            .iter()
            .filter_map(|i| match &i.env.event {
                Event::MessageCreated(m) => Some((m.room_id, i.id.clone(), m.seq)),
                _ => None,
            })
            .collect();
        let committed_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let refused: HashMap<usize, String> = applied.dead.into_iter().collect();
        let mut done = 0;
        for (i, item) in items.into_iter().enumerate() {
            if let Some(reason) = refused.get(&i) {
                dead.push(Dead {
                    id: item.id,
                    raw: item.raw,
                    reason: reason.clone(),
                });
                continue;
            }
            if target(&item.env.event).is_some_and(|t| applied.missing_targets.contains(&t)) {
                if now.duration_since(item.first_seen) < shared.settings.missing_target_timeout {
                    self.deferred.push(item);
                } else {
                    dead.push(Dead {
                        id: item.id,
                        raw: item.raw,
                        reason: "the message it refers to does not exist in that room".into(),
                    });
                }
                continue;
            }
            done += 1;
            shared.metrics.events[event_index(&item.env.event)].fetch_add(1, Relaxed);
            if let Some(ms) = id_millis(&item.id) {
                shared
                    .metrics
                    .observe_lag_ms(committed_ms.saturating_sub(ms));
            }
            acks.push(item.id);
        }
        if done > 0 {
            shared.metrics.observe_batch(done);
        }
        shared.metrics.rows_written.fetch_add(applied.rows, Relaxed);
        for d in &dead {
            tracing::warn!(entry = %d.id, reason = %d.reason, "dead-lettering an entry");
        }

        let mut backoff = Backoff::new(shared.settings.retry_max_backoff);
        while let Err(e) = self.acknowledge(&acks, &dead).await {
            shared.metrics.redis_errors.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, "cannot acknowledge the batch; retrying");
            self.conn = None;
            if pause(stop, backoff.next_delay()).await {
                return Err(Stopped);
            }
        }
        shared
            .metrics
            .dead_letters
            .fetch_add(dead.len() as u64, Relaxed);
        for (room, id, seq) in handled {
            self.marks.handled(room, &id, seq);
        }
        self.raise_marks().await;
        Ok(())
    }

    /// Raises the rooms' persisted watermarks that may be raised (best effort: on failure the
    /// candidates stay for the next batch, and the send script only keeps more in Redis meanwhile).
    async fn raise_marks(&mut self) {
        if self.marks.is_empty() {
            return;
        }
        let result = match self.connection().await {
            Ok(mut conn) => {
                self.marks
                    .raise(&mut conn, &self.shared.keys, self.shard, PERSIST_GROUP)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.shared.metrics.redis_errors.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, "cannot raise the rooms' persisted watermarks; will retry");
            self.conn = None;
        }
    }

    /// Dead letters and acknowledgements in one `MULTI` (the keys share the shard's hash tag).
    async fn acknowledge(&mut self, acks: &[String], dead: &[Dead]) -> RedisResult<()> {
        if acks.is_empty() && dead.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection().await?;
        let s = &self.shared.settings;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for d in dead {
            pipe.cmd("XADD")
                .arg(&self.dead_key)
                .arg("MAXLEN")
                .arg("~")
                .arg(s.dead_letter_maxlen)
                .arg("*")
                .arg("e")
                .arg(d.raw.as_slice())
                .arg("reason")
                .arg(&d.reason)
                .arg("id")
                .arg(&d.id)
                .arg("consumer")
                .arg(&s.consumer)
                .ignore();
        }
        let ids: Vec<&str> = acks
            .iter()
            .map(String::as_str)
            .chain(dead.iter().map(|d| d.id.as_str()))
            .collect();
        pipe.cmd("XACK")
            .arg(&self.key)
            .arg(PERSIST_GROUP)
            .arg(&ids)
            .ignore();
        pipe.query_async::<()>(&mut conn).await
    }
}

/// The message an edit or delete refers to.
fn target(e: &Event) -> Option<Uuid> {
    match e {
        Event::MessageEdited(m) => Some(m.id),
        Event::MessageDeleted(m) => Some(m.id),
        _ => None,
    }
}

fn event_index(e: &Event) -> usize {
    match e {
        Event::MessageCreated(_) => 0,
        Event::MessageEdited(_) => 1,
        Event::MessageDeleted(_) => 2,
        Event::ReadCursor(_) => 3,
        Event::DeliveredCursor(_) => 4,
        Event::LastSeen(_) => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(400));
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(25) && delays[0] <= Duration::from_millis(50));
        for d in &delays[3..] {
            assert!(*d >= Duration::from_millis(200) && *d <= Duration::from_millis(400));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(50));
    }
}
