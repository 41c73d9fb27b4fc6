//! The room path against a real Redis and MariaDB (one fresh database and Redis prefix per test):
//! sequence numbers, dedupe, the rate limit, the stream envelopes the scripts build (read back with
//! `chat_bus::stream::decode` and applied by the real persistence worker), edit/delete rights, receipts,
//! read-your-writes history, the room logs and the pub/sub events.
#![allow(clippy::unwrap_used)]

use chat_bus::stream::{decode, Envelope, Event};
use chat_bus::{shard_of, Bus};
use chat_domain::{ClientMsgId, MessageContent, MessageType};
use chat_realtime::{
    Control, CursorKind, Realtime, RoomEvent, RtConfig, RtError, SendRequest, Sent,
};
use chat_store::messages::{HistoryQuery, NewMessage};
use chat_store::Store;
use chat_testkit::TestEnv;
use deadpool_redis::redis;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};
use uuid::Uuid;

const SHARDS: u16 = 4;

struct World {
    env: TestEnv,
    store: Store,
    bus: Bus,
    rt: Realtime,
    /// `users[0]` created (and is the admin of) `rooms[0]`, `users[1]` of `rooms[1]`; every user is a
    /// member of every room.
    users: Vec<Uuid>,
    rooms: Vec<Uuid>,
    /// A user in no room.
    outsider: Uuid,
}

impl World {
    async fn new() -> Self {
        Self::with_limit(5).await
    }

    async fn with_limit(rate_limit: u32) -> Self {
        let env = TestEnv::new()
            .await
            .expect("test database (run scripts/deps.sh)");
        let store = env.store().await.unwrap();
        let bus = Bus::new(&env.redis_url, &env.redis_prefix).unwrap();
        let seeded = chat_testkit::seed_users_and_rooms(&store, 3, 2, true)
            .await
            .unwrap();
        let outsider = store
            .create_user(chat_store::users::NewUser {
                username: "outsider",
                email: "outsider@example.com",
                password_hash: "not-a-real-hash",
                full_name: None,
            })
            .await
            .unwrap()
            .id;
        let rt = Realtime::new(
            bus.clone(),
            store.clone(),
            RtConfig {
                shards: SHARDS,
                rate_limit,
                rate_window: Duration::from_secs(10),
                log_cap: 1000,
                hard_cap: 10_000,
            },
        );
        Self {
            env,
            store,
            bus,
            rt,
            users: seeded.users,
            rooms: seeded.rooms,
            outsider,
        }
    }

    async fn send(&self, room: Uuid, sender: Uuid, content: &str) -> Sent {
        self.try_send(room, sender, content, None).await.unwrap()
    }

    async fn try_send(
        &self,
        room: Uuid,
        sender: Uuid,
        content: &str,
        client_msg_id: Option<&str>,
    ) -> Result<Sent, RtError> {
        self.rt
            .send(&SendRequest {
                room,
                sender,
                kind: MessageType::Text,
                content: MessageContent::parse(content).unwrap(),
                client_msg_id: client_msg_id.map(|c| ClientMsgId::parse(c).unwrap()),
                traceparent: None,
            })
            .await
    }

    async fn redis(&self) -> chat_bus::Conn {
        self.bus.conn().await.unwrap()
    }

    /// The room path with `RECENT_LOG_SIZE` = `cap`, the message log's hard cap `hard`, and a rate
    /// limit no test here reaches.
    fn rt_with(&self, cap: u32, hard: u32) -> Realtime {
        Realtime::new(
            self.bus.clone(),
            self.store.clone(),
            RtConfig {
                shards: SHARDS,
                rate_limit: 1000,
                rate_window: Duration::from_secs(10),
                log_cap: cap,
                hard_cap: hard,
            },
        )
    }

    /// The real persistence worker, in this process; send on the channel to stop it.
    async fn spawn_worker(
        &self,
        name: &str,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let mut vars: HashMap<String, String> = self.env.vars().into_iter().collect();
        for (k, v) in [
            ("WORKER_PORT", "0"),
            ("BIND_HOST", "127.0.0.1"),
            ("WORKER_CONSUMER", name),
            ("WORKER_RETRY_MAX_MS", "200"),
        ] {
            vars.insert(k.into(), v.into());
        }
        vars.insert("SHARDS".into(), SHARDS.to_string());
        let app = chat_worker::Application::build(chat_config::Config::from_map(&vars).unwrap())
            .await
            .unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(app.run_until(async move {
            let _ = stop_rx.await;
        }));
        (stop_tx, worker)
    }

    /// Inserts `n` messages (seq 1..=n) from `sender` straight into MySQL.
    async fn seed_mysql(&self, room: Uuid, sender: Uuid, n: i64) -> Vec<NewMessage> {
        let now = chrono::Utc::now();
        let msgs: Vec<NewMessage> = (1..=n)
            .map(|seq| NewMessage {
                id: Uuid::now_v7(),
                room_id: room,
                seq,
                sender_id: sender,
                kind: "text".into(),
                content: format!("stored {seq}"),
                client_msg_id: None,
                created_at: now + chrono::Duration::milliseconds(seq),
            })
            .collect();
        self.store.insert_messages(&msgs).await.unwrap();
        msgs
    }

    /// Every stream entry of every shard, decoded, in stream order per shard.
    async fn stream_events(&self) -> Vec<Event> {
        self.stream_envelopes()
            .await
            .into_iter()
            .map(|e| e.event)
            .collect()
    }

    /// Every stream entry of every shard, decoded, in stream order per shard.
    async fn stream_envelopes(&self) -> Vec<Envelope> {
        let mut c = self.redis().await;
        let mut out = Vec::new();
        for s in 0..SHARDS {
            let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(self.bus.keys().stream(s))
                .arg("-")
                .arg("+")
                .query_async(&mut *c)
                .await
                .unwrap();
            for e in reply.ids {
                let bytes: Vec<u8> = e.get("e").expect("field e");
                let env = decode(&bytes).expect("the script's envelope decodes");
                assert_eq!(env.shard(SHARDS), s, "entry on its room's shard");
                out.push(env);
            }
        }
        out
    }

    /// A subscriber to `channels`.
    async fn subscribe(&self, channels: &[String]) -> chat_testkit::Subscription {
        self.env.subscribe(channels).await.unwrap()
    }
}

async fn rt_send(rt: &Realtime, room: Uuid, sender: Uuid, content: &str) -> Sent {
    rt.send(&SendRequest {
        room,
        sender,
        kind: MessageType::Text,
        content: MessageContent::parse(content).unwrap(),
        client_msg_id: None,
        traceparent: None,
    })
    .await
    .unwrap()
}

fn q(before: Option<i64>, after: Option<i64>, limit: i64) -> HistoryQuery {
    HistoryQuery {
        before,
        after,
        limit,
    }
}

/// Receives the next message on `ps` as (channel, payload), failing after 5 s.
async fn next_msg(ps: &mut chat_testkit::Subscription) -> (String, String) {
    ps.next_within(Duration::from_secs(5))
        .await
        .expect("a published message within 5 s")
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------------------------------------------
// send: seq, dedupe, rate limit, seeding the counter

#[tokio::test]
async fn sends_get_consecutive_seqs_per_room() {
    let w = World::new().await;
    let (a, b) = (w.rooms[0], w.rooms[1]);
    let mut seqs_a = Vec::new();
    for (i, u) in [w.users[0], w.users[1], w.users[2], w.users[0]]
        .iter()
        .enumerate()
    {
        let sent = w.send(a, *u, &format!("a{i}")).await;
        assert!(!sent.duplicate);
        assert_eq!(sent.message.room_id, a);
        assert_eq!(sent.message.sender_id, *u);
        assert_eq!(
            sent.message.content.as_deref(),
            Some(format!("a{i}").as_str())
        );
        assert_eq!(sent.message.kind, "text");
        assert!(sent.message.edited_at.is_none() && sent.message.deleted_at.is_none());
        // The JSON clients get is the message's own serialization.
        assert_eq!(serde_json::to_string(&sent.message).unwrap(), sent.json);
        seqs_a.push(sent.message.seq);
    }
    let seqs_b = vec![
        w.send(b, w.users[1], "b0").await.message.seq,
        w.send(b, w.users[1], "b1").await.message.seq,
    ];
    assert_eq!(seqs_a, vec![1, 2, 3, 4]);
    assert_eq!(seqs_b, vec![1, 2]);
    assert_eq!(w.rt.last_seq(a).await.unwrap(), 4);
    assert_eq!(w.rt.last_seq(b).await.unwrap(), 2);
    assert_eq!(w.rt.last_seq(Uuid::now_v7()).await.unwrap(), 0);
}

#[tokio::test]
async fn concurrent_sends_get_distinct_gap_free_seqs() {
    let w = World::with_limit(1000).await;
    let room = w.rooms[0];
    let mut tasks = Vec::new();
    for i in 0..40 {
        let rt = w.rt.clone();
        let sender = w.users[i % 3];
        tasks.push(tokio::spawn(async move {
            rt.send(&SendRequest {
                room,
                sender,
                kind: MessageType::Text,
                content: MessageContent::parse(&format!("m{i}")).unwrap(),
                client_msg_id: None,
                traceparent: None,
            })
            .await
            .unwrap()
            .message
            .seq
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_retried_client_msg_id_returns_the_original() {
    let w = World::new().await;
    let (room, alice, bob) = (w.rooms[0], w.users[0], w.users[1]);
    let first = w.try_send(room, alice, "hello", Some("c-1")).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.message.client_msg_id.as_deref(), Some("c-1"));
    let again = w
        .try_send(room, alice, "hello (retried)", Some("c-1"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(
        again.message, first.message,
        "the original: same id, seq, content"
    );
    assert_eq!(again.json, first.json);
    // The same clientMsgId from someone else, or in another room, is another message.
    let bobs = w.try_send(room, bob, "hi", Some("c-1")).await.unwrap();
    assert!(!bobs.duplicate);
    assert_eq!(bobs.message.seq, 2);
    let elsewhere = w
        .try_send(w.rooms[1], alice, "hi", Some("c-1"))
        .await
        .unwrap();
    assert!(!elsewhere.duplicate);
    assert_eq!(elsewhere.message.seq, 1);
    // A retry allocated no seq and wrote nothing to the stream.
    assert_eq!(w.send(room, alice, "next").await.message.seq, 3);
    let created = w
        .stream_events()
        .await
        .into_iter()
        .filter(|e| matches!(e, Event::MessageCreated(_)))
        .count();
    assert_eq!(created, 4);
}

#[tokio::test]
async fn the_sixth_message_in_the_window_is_rate_limited() {
    let w = World::new().await;
    let (room, alice) = (w.rooms[0], w.users[0]);
    for i in 0..5 {
        w.try_send(room, alice, &format!("m{i}"), Some(&format!("c{i}")))
            .await
            .unwrap();
    }
    match w.try_send(room, alice, "one too many", None).await {
        Err(RtError::RateLimited { retry_after }) => {
            assert!(retry_after > Duration::ZERO, "{retry_after:?}");
            assert!(retry_after <= Duration::from_secs(10), "{retry_after:?}");
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    let err = w.try_send(room, alice, "still", None).await.unwrap_err();
    assert_eq!(err.code(), "RATE_LIMITED");
    // A refused send allocates no seq; a retry of an accepted one is still answered; the limit is per
    // user and room.
    let retry = w.try_send(room, alice, "m0", Some("c0")).await.unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.message.seq, 1);
    assert_eq!(w.send(room, w.users[1], "bob").await.message.seq, 6);
    assert_eq!(w.send(w.rooms[1], alice, "other room").await.message.seq, 1);
    // Refused and retried sends leave no id → room pointers behind: one per accepted message.
    let mut c = w.redis().await;
    let pointers: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:v1:mid:*", w.env.redis_prefix))
        .query_async(&mut *c)
        .await
        .unwrap();
    assert_eq!(pointers.len(), 7, "{pointers:?}");
}

#[tokio::test]
async fn the_window_slides() {
    let w = World::new().await;
    let rt = Realtime::new(
        w.bus.clone(),
        w.store.clone(),
        RtConfig {
            shards: SHARDS,
            rate_limit: 2,
            rate_window: Duration::from_millis(300),
            log_cap: 1000,
            hard_cap: 10_000,
        },
    );
    let req = |content: &str| SendRequest {
        room: w.rooms[0],
        sender: w.users[0],
        kind: MessageType::Text,
        content: MessageContent::parse(content).unwrap(),
        client_msg_id: None,
        traceparent: None,
    };
    rt.send(&req("1")).await.unwrap();
    rt.send(&req("2")).await.unwrap();
    let Err(RtError::RateLimited { retry_after }) = rt.send(&req("3")).await else {
        panic!("limited")
    };
    assert!(retry_after <= Duration::from_millis(300));
    tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
    assert_eq!(rt.send(&req("3")).await.unwrap().message.seq, 3);
}

#[tokio::test]
async fn a_room_without_a_counter_continues_after_mysqls_last_seq() {
    let w = World::new().await;
    let room = w.rooms[0];
    w.seed_mysql(room, w.users[1], 7).await;
    assert_eq!(w.rt.last_seq(room).await.unwrap(), 0, "no counter yet");
    assert_eq!(
        w.send(room, w.users[0], "after the stored ones")
            .await
            .message
            .seq,
        8
    );
    assert_eq!(w.send(room, w.users[0], "and on").await.message.seq, 9);
    // Redis loses the counter (a flush, a fresh replica): it is seeded again from MySQL, which by
    // then has what the worker wrote.
    let mut c = w.redis().await;
    let _: () = redis::cmd("DEL")
        .arg(w.rt.room(room).seq())
        .query_async(&mut *c)
        .await
        .unwrap();
    let now = chrono::Utc::now();
    w.store
        .insert_messages(&[8, 9].map(|seq| NewMessage {
            id: Uuid::now_v7(),
            room_id: room,
            seq,
            sender_id: w.users[0],
            kind: "text".into(),
            content: "persisted".into(),
            client_msg_id: None,
            created_at: now,
        }))
        .await
        .unwrap();
    assert_eq!(
        w.send(room, w.users[0], "after a loss").await.message.seq,
        10
    );
}

// ---------------------------------------------------------------------------------------------------
// The stream: what the scripts append is what the worker stores

#[tokio::test]
async fn the_scripts_envelopes_decode_and_the_worker_stores_them() {
    let w = World::new().await;
    let (room, alice, bob) = (w.rooms[0], w.users[0], w.users[1]);
    let first = w
        .try_send(room, alice, "hello \"world\" ✓", Some("c-1"))
        .await
        .unwrap();
    let second = w.send(room, bob, "to be deleted").await;
    let third = w.send(room, bob, "stays").await;
    let edited =
        w.rt.edit(
            alice,
            first.message.id,
            &MessageContent::parse("hello, edited").unwrap(),
            None,
        )
        .await
        .unwrap();
    let deleted = w.rt.delete(bob, second.message.id, None).await.unwrap();
    assert_eq!(
        w.rt.cursor(bob, room, CursorKind::Read, 3, 0, None)
            .await
            .unwrap(),
        (3, true)
    );
    assert_eq!(
        w.rt.cursor(alice, room, CursorKind::Delivered, 2, 0, None)
            .await
            .unwrap(),
        (2, true)
    );

    // The entries, as the worker will read them.
    let events = w.stream_events().await;
    let names: Vec<&str> = events.iter().map(Event::name).collect();
    assert_eq!(
        names,
        [
            "message_created",
            "message_created",
            "message_created",
            "message_edited",
            "message_deleted",
            "read_cursor",
            "delivered_cursor"
        ]
    );
    let Event::MessageCreated(m) = &events[0] else {
        unreachable!()
    };
    assert_eq!(
        (m.id, m.room_id, m.seq, m.sender_id),
        (first.message.id, room, 1, alice)
    );
    assert_eq!(
        (
            m.kind.as_str(),
            m.content.as_str(),
            m.client_msg_id.as_deref()
        ),
        ("text", "hello \"world\" ✓", Some("c-1"))
    );
    assert_eq!(m.created_at, first.message.created_at.timestamp_millis());
    let Event::MessageCreated(m) = &events[1] else {
        unreachable!()
    };
    assert_eq!(m.client_msg_id, None);
    let Event::MessageEdited(e) = &events[3] else {
        unreachable!()
    };
    assert_eq!(
        (e.id, e.room_id, e.content.as_str()),
        (first.message.id, room, "hello, edited")
    );
    let Event::MessageDeleted(d) = &events[4] else {
        unreachable!()
    };
    assert_eq!((d.id, d.room_id, d.by), (second.message.id, room, bob));
    let Event::ReadCursor(c) = &events[5] else {
        unreachable!()
    };
    assert_eq!((c.room_id, c.user_id, c.seq), (room, bob, 3));

    // The real worker drains them into MySQL.
    let (stop_tx, worker) = w.spawn_worker("realtime-test").await;
    eventually("the edit, delete and cursors in MySQL", || async {
        let Ok(Some(m)) = w.store.message(second.message.id).await else {
            return false;
        };
        let read = w.store.membership(room, bob).await.unwrap().unwrap();
        let dlv = w.store.membership(room, alice).await.unwrap().unwrap();
        m.deleted_at.is_some() && read.read_seq == 3 && dlv.delivered_seq == 2
    })
    .await;
    let _ = stop_tx.send(());
    worker.await.unwrap().unwrap();

    let stored = w.store.message(first.message.id).await.unwrap().unwrap();
    assert_eq!(stored.seq, 1);
    assert_eq!(stored.sender_id, alice);
    assert_eq!(stored.kind, "text");
    assert_eq!(stored.content.as_deref(), Some("hello, edited"));
    assert_eq!(stored.client_msg_id.as_deref(), Some("c-1"));
    assert_eq!(stored.created_at, first.message.created_at);
    assert_eq!(
        stored.edited_at.map(|t| chat_realtime_iso(&t)),
        edited["editedAt"].as_str().map(str::to_owned)
    );
    assert!(stored.deleted_at.is_none());

    let gone = w.store.message(second.message.id).await.unwrap().unwrap();
    assert_eq!(gone.content, None);
    assert_eq!(
        gone.deleted_at.map(|t| chat_realtime_iso(&t)),
        deleted["deletedAt"].as_str().map(str::to_owned)
    );
    let kept = w.store.message(third.message.id).await.unwrap().unwrap();
    assert_eq!(kept, third.message, "stored exactly as sent");

    let members = w.store.members(room, 1000, 0).await.unwrap();
    let bob_m = members.iter().find(|m| m.user_id == bob).unwrap();
    assert_eq!(
        (bob_m.read_seq, bob_m.delivered_seq),
        (3, 3),
        "reading delivers too"
    );
    let alice_m = members.iter().find(|m| m.user_id == alice).unwrap();
    assert_eq!((alice_m.read_seq, alice_m.delivered_seq), (0, 2));

    // Nothing was dead-lettered.
    let mut c = w.redis().await;
    for s in 0..SHARDS {
        let n: i64 = redis::cmd("XLEN")
            .arg(w.bus.keys().dead_letter(s))
            .query_async(&mut *c)
            .await
            .unwrap();
        assert_eq!(n, 0, "dead letters on shard {s}");
    }
    // And the counter agrees with MySQL after the round trip.
    assert_eq!(w.store.max_seq(room).await.unwrap(), 3);
}

fn chat_realtime_iso(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

// ---------------------------------------------------------------------------------------------------
// edit and delete: who may

#[tokio::test]
async fn only_the_sender_edits_and_the_sender_or_an_admin_deletes() {
    let w = World::new().await;
    // rooms[0]: users[0] is its admin; users[1] and users[2] are members.
    let (room, admin, bob, carol) = (w.rooms[0], w.users[0], w.users[1], w.users[2]);
    let content = MessageContent::parse("changed").unwrap();
    let bobs = w.send(room, bob, "bob's").await.message;

    let e = w.rt.edit(carol, bobs.id, &content, None).await.unwrap_err();
    assert!(matches!(e, RtError::Forbidden(_)), "{e:?}");
    assert_eq!(e.code(), "FORBIDDEN");
    let e = w.rt.edit(admin, bobs.id, &content, None).await.unwrap_err();
    assert!(
        matches!(e, RtError::Forbidden(_)),
        "admins do not edit others' words: {e:?}"
    );
    let e = w.rt.delete(carol, bobs.id, None).await.unwrap_err();
    assert!(matches!(e, RtError::Forbidden(_)), "{e:?}");

    let unknown = Uuid::now_v7();
    let e = w.rt.edit(bob, unknown, &content, None).await.unwrap_err();
    assert!(matches!(e, RtError::NotFound(_)), "{e:?}");
    assert_eq!(e.code(), "NOT_FOUND");
    let e = w.rt.delete(bob, unknown, None).await.unwrap_err();
    assert!(matches!(e, RtError::NotFound(_)), "{e:?}");

    // A non-member learns nothing about the message: not found, not forbidden.
    let e =
        w.rt.edit(w.outsider, bobs.id, &content, None)
            .await
            .unwrap_err();
    assert!(matches!(e, RtError::NotFound(_)), "{e:?}");
    let e = w.rt.delete(w.outsider, bobs.id, None).await.unwrap_err();
    assert!(matches!(e, RtError::NotFound(_)), "{e:?}");

    let edited = w.rt.edit(bob, bobs.id, &content, None).await.unwrap();
    assert_eq!(edited["id"], bobs.id.to_string());
    assert_eq!(edited["roomId"], room.to_string());
    assert_eq!(edited["content"], "changed");
    assert!(edited["editedAt"].is_string());

    // The admin deletes bob's message; after that it is gone for every change.
    let deleted = w.rt.delete(admin, bobs.id, None).await.unwrap();
    assert_eq!(deleted["messageId"], bobs.id.to_string());
    assert_eq!(deleted["roomId"], room.to_string());
    assert_eq!(deleted["deletedBy"], admin.to_string());
    let e = w.rt.edit(bob, bobs.id, &content, None).await.unwrap_err();
    assert!(
        matches!(e, RtError::NotFound(_)),
        "edit after delete: {e:?}"
    );
    let e = w.rt.delete(bob, bobs.id, None).await.unwrap_err();
    assert!(
        matches!(e, RtError::NotFound(_)),
        "delete after delete: {e:?}"
    );

    // The sender deletes their own.
    let carols = w.send(room, carol, "carol's").await.message;
    w.rt.delete(carol, carols.id, None).await.unwrap();

    // A member who left can no longer change what they wrote.
    let left = w.send(room, carol, "before leaving").await.message;
    w.store.remove_member(room, carol, None).await.unwrap();
    let e = w.rt.edit(carol, left.id, &content, None).await.unwrap_err();
    assert!(matches!(e, RtError::NotFound(_)), "{e:?}");
}

#[tokio::test]
async fn messages_only_in_mysql_can_be_edited_and_deleted() {
    let w = World::new().await;
    let room = w.rooms[0];
    let stored = w.seed_mysql(room, w.users[1], 3).await;
    let content = MessageContent::parse("edited later").unwrap();
    let e =
        w.rt.edit(w.users[2], stored[0].id, &content, None)
            .await
            .unwrap_err();
    assert!(matches!(e, RtError::Forbidden(_)), "{e:?}");
    w.rt.edit(w.users[1], stored[0].id, &content, None)
        .await
        .unwrap();
    w.rt.delete(w.users[0], stored[1].id, None).await.unwrap();
    assert_eq!(
        w.rt.seq_of(room, stored[2].id).await.unwrap(),
        Some(3),
        "seq_of finds stored messages"
    );
    assert_eq!(
        w.rt.seq_of(w.rooms[1], stored[2].id).await.unwrap(),
        None,
        "in its own room only"
    );
    let names: Vec<&str> = w.stream_events().await.iter().map(Event::name).collect();
    assert_eq!(names, ["message_edited", "message_deleted"]);
}

// ---------------------------------------------------------------------------------------------------
// receipts

#[tokio::test]
async fn cursors_move_forward_only_up_to_the_last_message() {
    let w = World::new().await;
    let (room, alice, bob) = (w.rooms[0], w.users[0], w.users[1]);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(w.send(room, alice, &format!("m{i}")).await.message.id);
    }
    let mut ps = w.subscribe(&[w.rt.room(room).channel()]).await;

    let read = |seq: i64, floor: i64| w.rt.cursor(bob, room, CursorKind::Read, seq, floor, None);
    assert_eq!(read(2, 0).await.unwrap(), (2, true));
    let (_, text) = next_msg(&mut ps).await;
    let ev: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ev["e"], "message_read");
    assert_eq!(ev["d"]["roomId"], room.to_string());
    assert_eq!(ev["d"]["userId"], bob.to_string());
    assert_eq!(ev["d"]["seq"], 2);
    assert_eq!(ev["d"]["messageId"], ids[1].to_string());
    assert!(ev["d"]["readAt"].is_string());

    assert_eq!(read(1, 0).await.unwrap(), (2, false), "never backwards");
    assert_eq!(read(2, 0).await.unwrap(), (2, false));
    assert_eq!(
        read(99, 0).await.unwrap(),
        (3, true),
        "clamped to the last message"
    );
    assert_eq!(read(99, 0).await.unwrap(), (3, false));
    // The delivered cursor is separate.
    assert_eq!(
        w.rt.cursor(bob, room, CursorKind::Delivered, 1, 0, None)
            .await
            .unwrap(),
        (1, true)
    );
    let (_, text) = next_msg(&mut ps).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["e"],
        "message_read"
    );
    let (_, text) = next_msg(&mut ps).await;
    let ev: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ev["e"], "delivered");
    assert!(ev["d"]["deliveredAt"].is_string());

    // The floor (MySQL's cursor) counts even when Redis has none for the user.
    let carol = w.users[2];
    assert_eq!(
        w.rt.cursor(carol, room, CursorKind::Read, 2, 3, None)
            .await
            .unwrap(),
        (3, false)
    );
    for s in 0..2 {
        w.send(room, alice, &format!("n{s}")).await;
    }
    assert_eq!(
        w.rt.cursor(carol, room, CursorKind::Read, 4, 3, None)
            .await
            .unwrap(),
        (4, true)
    );
    assert_eq!(
        w.rt.cursor(carol, room, CursorKind::Read, 0, 0, None)
            .await
            .unwrap(),
        (4, false)
    );
}

#[tokio::test]
async fn cursors_work_in_a_room_whose_history_is_only_in_mysql() {
    let w = World::new().await;
    let room = w.rooms[0];
    let stored = w.seed_mysql(room, w.users[0], 5).await;
    assert_eq!(
        w.rt.cursor(w.users[1], room, CursorKind::Read, 4, 0, None)
            .await
            .unwrap(),
        (4, true)
    );
    assert_eq!(
        w.rt.cursor(w.users[1], room, CursorKind::Read, 50, 0, None)
            .await
            .unwrap(),
        (5, true)
    );
    assert_eq!(w.rt.seq_of(room, stored[3].id).await.unwrap(), Some(4));
    // And sending after that continues the stored sequence.
    assert_eq!(w.send(room, w.users[1], "new").await.message.seq, 6);
}

// ---------------------------------------------------------------------------------------------------
// read-your-writes history

fn seqs(page: &chat_store::messages::HistoryPage) -> Vec<i64> {
    page.messages.iter().map(|m| m.seq).collect()
}

#[tokio::test]
async fn history_merges_unpersisted_messages_with_mysql() {
    let w = World::with_limit(100).await;
    let (room, alice, bob) = (w.rooms[0], w.users[0], w.users[1]);
    w.seed_mysql(room, bob, 60).await;
    let mut sent = Vec::new();
    for i in 61..=65 {
        sent.push(w.send(room, alice, &format!("live {i}")).await.message);
    }
    assert_eq!(sent[0].seq, 61);
    w.rt.edit(
        alice,
        sent[1].id,
        &MessageContent::parse("live 62, edited").unwrap(),
        None,
    )
    .await
    .unwrap();
    w.rt.delete(alice, sent[2].id, None).await.unwrap();

    let page = w.rt.history(room, q(None, None, 50)).await.unwrap();
    assert_eq!(seqs(&page), (16..=65).collect::<Vec<_>>());
    assert!(page.has_more);
    let by_seq = |p: &chat_store::messages::HistoryPage, s: i64| {
        p.messages.iter().find(|m| m.seq == s).cloned().unwrap()
    };
    assert_eq!(by_seq(&page, 60).content.as_deref(), Some("stored 60"));
    assert_eq!(by_seq(&page, 61).content.as_deref(), Some("live 61"));
    let e = by_seq(&page, 62);
    assert_eq!(e.content.as_deref(), Some("live 62, edited"));
    assert!(e.edited_at.is_some());
    let d = by_seq(&page, 63);
    assert_eq!(d.content, None);
    assert!(d.deleted_at.is_some());
    assert_eq!(by_seq(&page, 65), sent[4]);

    let page = w.rt.history(room, q(Some(16), None, 50)).await.unwrap();
    assert_eq!(seqs(&page), (1..=15).collect::<Vec<_>>());
    assert!(!page.has_more);

    let page = w.rt.history(room, q(None, Some(58), 5)).await.unwrap();
    assert_eq!(seqs(&page), (59..=63).collect::<Vec<_>>());
    assert!(page.has_more);
    let page = w.rt.history(room, q(None, Some(60), 10)).await.unwrap();
    assert_eq!(seqs(&page), (61..=65).collect::<Vec<_>>());
    assert!(!page.has_more);
    let page = w.rt.history(room, q(None, Some(64), 1)).await.unwrap();
    assert_eq!(seqs(&page), vec![65]);
    assert!(!page.has_more);
    let page = w.rt.history(room, q(None, Some(65), 10)).await.unwrap();
    assert!(page.messages.is_empty() && !page.has_more);
    let page = w.rt.history(room, q(Some(64), Some(59), 10)).await.unwrap();
    assert_eq!(seqs(&page), vec![60, 61, 62, 63]);
    assert!(!page.has_more);
    let page = w.rt.history(room, q(Some(63), None, 3)).await.unwrap();
    assert_eq!(seqs(&page), vec![60, 61, 62]);
    assert!(page.has_more);
    let page = w.rt.history(room, q(None, None, 5)).await.unwrap();
    assert_eq!(seqs(&page), (61..=65).collect::<Vec<_>>());
    assert!(page.has_more);

    // Once the worker has written them (same ids and seqs), nothing appears twice and Redis's newer
    // state still wins until MySQL catches up.
    let now = chrono::Utc::now();
    w.store
        .insert_messages(
            &sent
                .iter()
                .map(|m| NewMessage {
                    id: m.id,
                    room_id: room,
                    seq: m.seq,
                    sender_id: m.sender_id,
                    kind: m.kind.clone(),
                    content: m.content.clone().unwrap_or_default(),
                    client_msg_id: None,
                    created_at: now,
                })
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let page = w.rt.history(room, q(None, None, 10)).await.unwrap();
    assert_eq!(seqs(&page), (56..=65).collect::<Vec<_>>());
    assert!(page.has_more);
    assert_eq!(
        by_seq(&page, 62).content.as_deref(),
        Some("live 62, edited")
    );
    assert_eq!(by_seq(&page, 63).content, None);
}

#[tokio::test]
async fn edited_content_survives_the_scripts_json_round_trip() {
    let w = World::new().await;
    let (room, alice) = (w.rooms[0], w.users[0]);
    let original = "a \"quoted\" \\ back/slash, ünïcødé ✓ 😀, tab\tand\u{1}control";
    let sent = w.send(room, alice, original).await.message;
    let page = w.rt.history(room, q(None, None, 10)).await.unwrap();
    assert_eq!(page.messages, vec![sent.clone()]);
    let edited = "édité \"again\" </script> \u{0} 🎉";
    w.rt.edit(
        alice,
        sent.id,
        &MessageContent::parse(edited).unwrap(),
        None,
    )
    .await
    .unwrap();
    let page = w.rt.history(room, q(None, None, 10)).await.unwrap();
    let m = &page.messages[0];
    assert_eq!(m.content.as_deref(), Some(edited));
    assert_eq!(
        (m.id, m.seq, m.created_at),
        (sent.id, sent.seq, sent.created_at)
    );
    assert!(m.edited_at.is_some());
    // A later delete of the re-encoded copy still works, and keeps the message's place.
    w.rt.delete(alice, sent.id, None).await.unwrap();
    let page = w.rt.history(room, q(None, None, 10)).await.unwrap();
    assert_eq!(page.messages[0].content, None);
    assert_eq!(page.messages[0].seq, 1);
}

#[tokio::test]
async fn recent_logs_are_capped() {
    let w = World::new().await;
    // No worker: nothing is persisted, so only the hard cap trims the message log (and counts it).
    let rt = w.rt_with(3, 3);
    let room = w.rooms[0];
    let before = chat_realtime::unsaved_trimmed_total();
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(
            rt_send(&rt, room, w.users[0], &format!("m{i}"))
                .await
                .message,
        );
    }
    assert_eq!(rt.log_after(&[room], 0).await.unwrap().len(), 3);
    let recent = rt.recent_messages(room, q(None, None, 10)).await.unwrap();
    assert_eq!(
        recent.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert!(chat_realtime::unsaved_trimmed_total() >= before + 2);
    let mut c = w.redis().await;
    let ids: i64 = redis::cmd("HLEN")
        .arg(rt.room(room).ids())
        .query_async(&mut *c)
        .await
        .unwrap();
    assert_eq!(ids, 3, "trimmed messages leave the id index too");
    // A message the hard cap trimmed before the worker wrote it is no longer found (the documented
    // bound on how far Redis may run ahead of MySQL); a recent one is.
    assert!(rt.resolve_message(sent[0].id).await.unwrap().is_none());
    let r = rt.resolve_message(sent[4].id).await.unwrap().unwrap();
    assert_eq!(
        (r.room, r.seq, r.sender, r.deleted),
        (room, 5, w.users[0], false)
    );
}

/// Every seq of `room` history returns, paging backwards from the newest and forwards from the
/// start with pages of `limit`: no hole, no duplicate.
async fn assert_history_complete(rt: &Realtime, room: Uuid, last: i64, limit: i64) {
    let want: Vec<i64> = (1..=last).collect();
    let mut back = Vec::new();
    let mut before = None;
    loop {
        let page = rt.history(room, q(before, None, limit)).await.unwrap();
        let s = seqs(&page);
        before = s.first().copied();
        back.splice(0..0, s);
        if !page.has_more {
            break;
        }
    }
    assert_eq!(back, want, "paging backwards");
    let mut fwd = Vec::new();
    let mut after = Some(0);
    loop {
        let page = rt.history(room, q(None, after, limit)).await.unwrap();
        let s = seqs(&page);
        after = s.last().copied().or(after);
        fwd.extend(s);
        if !page.has_more {
            break;
        }
    }
    assert_eq!(fwd, want, "paging forwards");
}

async fn msgs_seqs(w: &World, rt: &Realtime, room: Uuid) -> Vec<i64> {
    let mut c = w.redis().await;
    let v: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(rt.room(room).msgs())
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut *c)
        .await
        .unwrap();
    #[allow(clippy::cast_possible_truncation)]
    v.into_iter().map(|(_, s)| s as i64).collect()
}

async fn persisted_mark(w: &World, rt: &Realtime, room: Uuid) -> Option<i64> {
    let mut c = w.redis().await;
    redis::cmd("GET")
        .arg(rt.room(room).persisted())
        .query_async(&mut *c)
        .await
        .unwrap()
}

#[tokio::test]
async fn messages_mysql_lacks_stay_in_redis_past_the_cap_until_the_worker_stores_them() {
    let w = World::new().await;
    let rt = w.rt_with(10, 100);
    let room = w.rooms[0];
    // A watermark left from before Redis lost the room's counter: the first send seeds the counter
    // from MySQL (0) and drops the stale mark, which would otherwise let seqs 1..1000 be trimmed.
    let mut c = w.redis().await;
    let _: () = redis::cmd("SET")
        .arg(rt.room(room).persisted())
        .arg(1000)
        .query_async(&mut *c)
        .await
        .unwrap();
    drop(c);

    // No worker: 3 × RECENT_LOG_SIZE messages, none in MySQL.
    let mut sent = Vec::new();
    for i in 0..30 {
        sent.push(
            rt_send(&rt, room, w.users[i % 3], &format!("m{i}"))
                .await
                .message,
        );
    }
    assert_eq!(persisted_mark(&w, &rt, room).await, None);
    assert_eq!(msgs_seqs(&w, &rt, room).await, (1..=30).collect::<Vec<_>>());
    assert_history_complete(&rt, room, 30, 7).await;
    // Edits and deletes still find and update the old entries kept past the cap.
    rt.edit(
        w.users[0],
        sent[0].id,
        &MessageContent::parse("first, edited").unwrap(),
        None,
    )
    .await
    .unwrap();
    rt.delete(w.users[1], sent[1].id, None).await.unwrap();
    let page = rt.history(room, q(Some(3), None, 5)).await.unwrap();
    assert_eq!(page.messages[0].content.as_deref(), Some("first, edited"));
    assert!(page.messages[1].deleted_at.is_some());

    // The worker stores them and raises the room's watermark to the last one.
    let (stop, worker) = w.spawn_worker("watermark-test").await;
    eventually("the watermark at 30", || async {
        persisted_mark(&w, &rt, room).await == Some(30)
    })
    .await;
    assert_eq!(w.store.max_seq(room).await.unwrap(), 30);
    let _ = stop.send(());
    worker.await.unwrap().unwrap();

    // The next send trims the log back to the cap: the stored messages go, with their ids.
    rt_send(&rt, room, w.users[0], "m30").await;
    assert_eq!(
        msgs_seqs(&w, &rt, room).await,
        (22..=31).collect::<Vec<_>>()
    );
    let mut c = w.redis().await;
    let ids: i64 = redis::cmd("HLEN")
        .arg(rt.room(room).ids())
        .query_async(&mut *c)
        .await
        .unwrap();
    assert_eq!(ids, 10);
    drop(c);
    // History is still whole: the trimmed part from MySQL (with the edit and the delete), the
    // unsaved 31st from Redis.
    assert_history_complete(&rt, room, 31, 7).await;
    let page = rt.history(room, q(Some(3), None, 5)).await.unwrap();
    assert_eq!(page.messages[0].content.as_deref(), Some("first, edited"));
    assert!(page.messages[1].deleted_at.is_some());
}

#[tokio::test]
async fn the_hard_cap_trims_unsaved_messages_and_counts_them() {
    let w = World::new().await;
    let rt = w.rt_with(10, 20);
    let room = w.rooms[1];
    // Seed the counter, then pretend the worker stored up to seq 5.
    rt_send(&rt, room, w.users[0], "m0").await;
    let mut c = w.redis().await;
    let _: () = redis::cmd("SET")
        .arg(rt.room(room).persisted())
        .arg(5)
        .query_async(&mut *c)
        .await
        .unwrap();
    drop(c);
    let before = chat_realtime::unsaved_trimmed_total();
    for i in 1..30 {
        rt_send(&rt, room, w.users[i % 3], &format!("m{i}")).await;
    }
    // Past the cap only 1..5 could go as stored; past the hard cap 6..10 went although unsaved.
    assert_eq!(
        msgs_seqs(&w, &rt, room).await,
        (11..=30).collect::<Vec<_>>()
    );
    assert!(
        chat_realtime::unsaved_trimmed_total() >= before + 5,
        "the unsaved messages the hard cap trimmed are counted"
    );
    let page = rt.history(room, q(None, None, 50)).await.unwrap();
    assert_eq!(
        seqs(&page),
        (11..=30).collect::<Vec<_>>(),
        "the documented loss"
    );
}

#[tokio::test]
async fn history_of_a_room_with_only_unpersisted_messages() {
    let w = World::new().await;
    let room = w.rooms[1];
    for i in 0..3 {
        w.send(room, w.users[i], &format!("m{i}")).await;
    }
    let page = w.rt.history(room, q(None, None, 2)).await.unwrap();
    assert_eq!(seqs(&page), vec![2, 3]);
    assert!(page.has_more);
    let page = w.rt.history(room, q(Some(2), None, 2)).await.unwrap();
    assert_eq!(seqs(&page), vec![1]);
    assert!(!page.has_more);
    let page = w.rt.history(w.rooms[0], q(None, None, 50)).await.unwrap();
    assert!(page.messages.is_empty() && !page.has_more);
}

// ---------------------------------------------------------------------------------------------------
// room logs and channels

#[tokio::test]
async fn durable_events_are_published_and_logged_in_position_order() {
    let w = World::new().await;
    let (a, b, alice, bob) = (w.rooms[0], w.rooms[1], w.users[0], w.users[1]);
    let mut ps = w.subscribe(&[w.rt.room(a).channel()]).await;

    let sent = w.send(a, alice, "first").await;
    w.rt.edit(
        alice,
        sent.message.id,
        &MessageContent::parse("first!").unwrap(),
        None,
    )
    .await
    .unwrap();
    w.send(b, bob, "elsewhere").await;
    w.rt.cursor(bob, a, CursorKind::Read, 1, 0, None)
        .await
        .unwrap();
    w.rt.delete(alice, sent.message.id, None).await.unwrap();

    // Pub/sub: the room's four durable events, each naming its predecessor.
    let mut published = Vec::new();
    for _ in 0..4 {
        let (channel, text) = next_msg(&mut ps).await;
        assert_eq!(channel, w.rt.room(a).channel());
        let v: Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4, "{text}");
        for k in ["e", "pos", "prev", "d"] {
            assert!(keys.contains(&k), "{k} in {text}");
        }
        let ev = RoomEvent::parse(&text).unwrap();
        published.push((
            ev.e.to_owned(),
            ev.pos.unwrap(),
            ev.prev.unwrap(),
            text.clone(),
        ));
    }
    let names: Vec<&str> = published.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "receive_message",
            "message_edited",
            "message_read",
            "message_deleted"
        ]
    );
    assert_eq!(
        published[0].2, 0,
        "the room's first event has no predecessor"
    );
    for pair in published.windows(2) {
        assert!(pair[1].1 > pair[0].1, "positions increase");
        assert_eq!(pair[1].2, pair[0].1, "prev is the previous event's pos");
    }
    let first: Value = serde_json::from_str(&published[0].3).unwrap();
    assert_eq!(
        first["d"],
        serde_json::from_str::<Value>(&sent.json).unwrap(),
        "receive_message carries the message as sent"
    );
    let edited: Value = serde_json::from_str(&published[1].3).unwrap();
    assert_eq!(edited["d"]["content"], "first!");
    let deleted: Value = serde_json::from_str(&published[3].3).unwrap();
    assert_eq!(deleted["d"]["messageId"], sent.message.id.to_string());

    // The log holds the same texts at the same positions.
    let log = w.rt.log_after(&[a], 0).await.unwrap();
    assert_eq!(log.len(), 4);
    for (e, p) in log.iter().zip(&published) {
        assert_eq!((e.room, e.pos, e.text.as_str()), (a, p.1, p.3.as_str()));
    }
    let after_first = w.rt.log_after(&[a], published[0].1).await.unwrap();
    assert_eq!(
        after_first.iter().map(|e| e.pos).collect::<Vec<_>>(),
        published[1..].iter().map(|p| p.1).collect::<Vec<_>>()
    );
    let middle =
        w.rt.log_range(&[a], published[0].1, Some(published[3].1))
            .await
            .unwrap();
    assert_eq!(
        middle.iter().map(|e| e.pos).collect::<Vec<_>>(),
        vec![published[1].1, published[2].1]
    );
    // Several rooms come back merged by position.
    let both = w.rt.log_after(&[a, b], 0).await.unwrap();
    assert_eq!(both.len(), 5);
    assert!(both.windows(2).all(|p| p[0].pos <= p[1].pos));
    let from_b: Vec<_> = both.iter().filter(|e| e.room == b).collect();
    assert_eq!(from_b.len(), 1);
    assert_eq!(
        RoomEvent::parse(&from_b[0].text).unwrap().e,
        "receive_message"
    );
    assert!(w.rt.log_after(&[], 0).await.unwrap().is_empty());
    assert!(w
        .rt
        .log_after(&[a], published[3].1)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_traceparent_travels_in_the_envelope_and_as_tp_in_the_published_event() {
    let w = World::new().await;
    let (room, alice, bob) = (w.rooms[0], w.users[0], w.users[1]);
    let mut ps = w.subscribe(&[w.rt.room(room).channel()]).await;
    let tp = |n: u8| format!("00-0af7651916cd43dd8448eb211c80319c-00000000000000{n:02x}-01");
    let sent =
        w.rt.send(&SendRequest {
            room,
            sender: alice,
            kind: MessageType::Text,
            content: MessageContent::parse("traced").unwrap(),
            client_msg_id: None,
            traceparent: Some(tp(1)),
        })
        .await
        .unwrap();
    let content = MessageContent::parse("traced!").unwrap();
    w.rt.edit(alice, sent.message.id, &content, Some(&tp(2)))
        .await
        .unwrap();
    w.rt.cursor(bob, room, CursorKind::Read, 1, 0, Some(&tp(3)))
        .await
        .unwrap();
    // Not a traceparent: dropped rather than pasted into the JSON.
    w.rt.delete(alice, sent.message.id, Some("00-\"},\"x\":1-{"))
        .await
        .unwrap();

    let mut texts = Vec::new();
    for _ in 0..4 {
        texts.push(next_msg(&mut ps).await.1);
    }
    for (i, text) in texts.iter().enumerate() {
        let v: Value = serde_json::from_str(text).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let ev = RoomEvent::parse(text).unwrap();
        if i < 3 {
            assert_eq!(keys.len(), 5, "{text}");
            assert_eq!(ev.tp, Some(tp(i as u8 + 1).as_str()), "{text}");
            assert!(text.ends_with(&format!(r#","tp":"{}"}}"#, tp(i as u8 + 1))));
        } else {
            assert_eq!(keys.len(), 4, "no tp without a valid traceparent: {text}");
            assert_eq!(ev.tp, None);
        }
    }
    // The log keeps the same texts, so a refill continues the trace too.
    let log = w.rt.log_after(&[room], 0).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
        texts
    );
    // The envelopes carry the same traceparents to the worker.
    let envs = w.stream_envelopes().await;
    assert_eq!(
        envs.iter()
            .map(|e| e.traceparent.clone())
            .collect::<Vec<_>>(),
        [Some(tp(1)), Some(tp(2)), Some(tp(3)), None]
    );
}

#[tokio::test]
async fn control_messages_go_to_the_control_channel_and_the_room() {
    let w = World::new().await;
    let (room, bob) = (w.rooms[0], w.users[1]);
    assert_eq!(
        w.rt.control_channel(),
        format!("{}:v1:ctl", w.env.redis_prefix)
    );
    let mut ps = w
        .subscribe(&[w.rt.control_channel(), w.rt.room(room).channel()])
        .await;
    w.rt.publish_control(&Control::MemberRemoved { room, user: bob })
        .await
        .unwrap();
    let (ch, text) = next_msg(&mut ps).await;
    assert_eq!(ch, w.rt.room(room).channel(), "the room event comes first");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["e"], "user_left");
    assert_eq!(v["d"]["userId"], bob.to_string());
    assert!(v.get("pos").is_none(), "volatile: no position");
    let (ch, text) = next_msg(&mut ps).await;
    assert_eq!(ch, w.rt.control_channel());
    assert_eq!(
        serde_json::from_str::<Control>(&text).unwrap(),
        Control::MemberRemoved { room, user: bob }
    );

    let jti = Uuid::new_v4();
    w.rt.publish_control(&Control::TokenRevoked {
        user: bob,
        jti: Some(jti),
    })
    .await
    .unwrap();
    let (ch, text) = next_msg(&mut ps).await;
    assert_eq!(ch, w.rt.control_channel(), "no room event for a token");
    assert_eq!(
        serde_json::from_str::<Control>(&text).unwrap(),
        Control::TokenRevoked {
            user: bob,
            jti: Some(jti)
        }
    );
    // Volatile events are neither logged nor persisted.
    w.rt.publish_volatile(
        room,
        "typing",
        &serde_json::json!({"isTyping": true}),
        Some(bob),
    )
    .await
    .unwrap();
    let (_, text) = next_msg(&mut ps).await;
    let ev = RoomEvent::parse(&text).unwrap();
    assert_eq!((ev.e, ev.x), ("typing", Some(bob)));
    assert!(w.rt.log_after(&[room], 0).await.unwrap().is_empty());
    assert!(w.stream_events().await.is_empty());
    assert_eq!(w.rt.room(room).shard(), shard_of(room, SHARDS));
}

/// A retry after the gateway's dedupe entry expired is accepted (and acked) as a new message: MySQL
/// must store it (without the clientMsgId its first copy holds), not refuse it. MySQL compares the ids
/// case-insensitively (the Redis dedupe does not): one differing only by case is stored the same way.
#[tokio::test]
async fn a_client_msg_id_reused_after_the_dedupe_window_is_stored_not_refused() {
    let w = World::new().await;
    let (room, sender) = (w.rooms[0], w.users[1]);
    let msg = |seq: i64, cmid: &str| NewMessage {
        id: Uuid::now_v7(),
        room_id: room,
        seq,
        sender_id: sender,
        kind: "text".into(),
        content: format!("m{seq}"),
        client_msg_id: Some(cmid.into()),
        created_at: chrono::Utc::now(),
    };
    let first = msg(1, "retry-1");
    w.store
        .insert_messages(std::slice::from_ref(&first))
        .await
        .unwrap();
    // The same message again (a replayed batch) changes nothing; a later one reusing the id is kept.
    let again = msg(2, "retry-1");
    let other_case = msg(3, "RETRY-1");
    w.store
        .insert_messages(&[first.clone(), again.clone(), other_case.clone()])
        .await
        .unwrap();
    let stored = |id: Uuid| {
        let store = w.store.clone();
        async move { store.message(id).await.unwrap().unwrap() }
    };
    assert_eq!(
        stored(first.id).await.client_msg_id.as_deref(),
        Some("retry-1")
    );
    assert_eq!(stored(again.id).await.client_msg_id, None);
    assert_eq!(stored(again.id).await.seq, 2);
    assert_eq!(stored(other_case.id).await.client_msg_id, None);
    assert_eq!(stored(other_case.id).await.seq, 3);
}
