//! What the events do to the rows: edits, deletes, cursors and `last_seen`, in stream order.

use crate::helpers::{eventually, World};
use chat_bus::stream::{Cursor, Envelope, Event, LastSeen, MessageDeleted, MessageEdited};
use chrono::{DateTime, Utc};
use std::time::Duration;
use uuid::Uuid;

const WITHIN: Duration = Duration::from_secs(60);

fn edit(id: Uuid, room: Uuid, content: &str, at: i64) -> Envelope {
    Envelope::new(Event::MessageEdited(MessageEdited {
        id,
        room_id: room,
        content: content.into(),
        edited_at: at,
    }))
}

fn delete(id: Uuid, room: Uuid, by: Uuid, at: i64) -> Envelope {
    Envelope::new(Event::MessageDeleted(MessageDeleted {
        id,
        room_id: room,
        deleted_at: at,
        by,
    }))
}

fn id_of(e: &Envelope) -> Uuid {
    match &e.event {
        Event::MessageCreated(m) => m.id,
        _ => panic!("not a message"),
    }
}

type Row = (Option<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

async fn row(w: &World, id: Uuid) -> Row {
    sqlx::query_as("SELECT content, edited_at, deleted_at FROM messages WHERE id = ?")
        .bind(id)
        .fetch_one(w.store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn edits_and_deletes_in_the_same_batch_as_their_message_apply_correctly() {
    let mut w = World::new(2, 1, 1).await;
    let (room, user) = (w.rooms[0], w.users[0]);
    let m = w.messages_in(room, 5);
    let ids: Vec<Uuid> = m.iter().map(id_of).collect();
    let t = chrono::Utc::now().timestamp_millis();
    // Everything is appended before the worker starts, so it arrives as one batch.
    let events = vec![
        m[0].clone(),
        edit(ids[0], room, "first edit", t + 1),
        edit(ids[0], room, "second edit", t + 2),
        m[1].clone(),
        delete(ids[1], room, user, t + 3),
        m[2].clone(),
        edit(ids[2], room, "edited then deleted", t + 4),
        delete(ids[2], room, user, t + 5),
        m[3].clone(),
        delete(ids[3], room, user, t + 6),
        edit(ids[3], room, "an edit after the delete is ignored", t + 7),
        m[4].clone(),
    ];
    w.append(&events).await;
    let worker = w.spawn_worker("a", &[]).await;
    eventually("nothing pending", WITHIN, || async {
        w.message_count().await == 5 && w.pending().await == 0
    })
    .await;

    let (content, edited, deleted) = row(&w, ids[0]).await;
    assert_eq!(content.as_deref(), Some("second edit"));
    assert_eq!(edited.map(|d| d.timestamp_millis()), Some(t + 2));
    assert!(deleted.is_none());
    for (i, at) in [(1, t + 3), (2, t + 5), (3, t + 6)] {
        let (content, _, deleted) = row(&w, ids[i]).await;
        assert_eq!(content, None, "message {i} is soft-deleted");
        assert_eq!(deleted.map(|d| d.timestamp_millis()), Some(at));
    }
    let (content, edited, deleted) = row(&w, ids[4]).await;
    assert!(content.is_some() && edited.is_none() && deleted.is_none());

    // A later batch: an older edit never overwrites a newer one, a delete sticks.
    w.append(&[
        edit(ids[0], room, "stale edit", t),
        edit(ids[4], room, "late edit", t + 10),
    ])
    .await;
    eventually("the late edit", WITHIN, || async {
        row(&w, ids[4]).await.0.as_deref() == Some("late edit")
    })
    .await;
    assert_eq!(row(&w, ids[0]).await.0.as_deref(), Some("second edit"));
    worker.stop().await;
}

#[tokio::test]
async fn an_edit_read_before_its_message_is_stored_waits_for_it() {
    // With several replicas, an edit can be read while another replica still writes its message.
    let mut w = World::new(2, 1, 1).await;
    let room = w.rooms[0];
    let m = w.messages_in(room, 1);
    let id = id_of(&m[0]);
    w.append(&[edit(
        id,
        room,
        "edited",
        chrono::Utc::now().timestamp_millis(),
    )])
    .await;
    let worker = w
        .spawn_worker("a", &[("WORKER_MISSING_TARGET_MS", "30000")])
        .await;
    eventually("the edit to be read", WITHIN, || async {
        w.pending().await == 1
    })
    .await;
    w.append(&m).await;
    eventually("the edit applied", WITHIN, || async {
        w.message_count().await == 1 && row(&w, id).await.0.as_deref() == Some("edited")
    })
    .await;
    eventually("nothing pending", WITHIN, || async {
        w.pending().await == 0
    })
    .await;
    assert!(w.dead_letters().await.is_empty());
    worker.stop().await;
}

#[tokio::test]
async fn cursors_and_last_seen_never_move_backwards() {
    let mut w = World::new(3, 1, 1).await;
    let (room, reader, other) = (w.rooms[0], w.users[1], w.users[2]);
    let cursor = |user, seq| Cursor {
        room_id: room,
        user_id: user,
        seq,
        at: chrono::Utc::now().timestamp_millis(),
    };
    let seen = |user, at| Envelope::new(Event::LastSeen(LastSeen { user_id: user, at }));
    let t = chrono::Utc::now().timestamp_millis();
    let msgs = w.messages_in(room, 20);
    w.append(&msgs).await;
    // One batch: read 10 then 5, delivered 3 (below the read cursor); the other member reads 4.
    w.append(&[
        Envelope::new(Event::ReadCursor(cursor(reader, 10))),
        Envelope::new(Event::ReadCursor(cursor(reader, 5))),
        Envelope::new(Event::DeliveredCursor(cursor(reader, 3))),
        Envelope::new(Event::DeliveredCursor(cursor(other, 4))),
        seen(reader, t),
        seen(reader, t - 60_000),
    ])
    .await;
    let worker = w.spawn_worker("a", &[]).await;
    let cursors = |user| {
        let store = w.store.clone();
        async move {
            let m = store.membership(room, user).await.unwrap().unwrap();
            (m.read_seq, m.delivered_seq)
        }
    };
    eventually("the first cursors", WITHIN, || async {
        w.pending().await == 0 && cursors(reader).await == (10, 10)
    })
    .await;
    assert_eq!(cursors(other).await, (0, 4));

    // Later batches: lower cursors change nothing, higher ones move forward; same for last_seen.
    w.append(&[
        Envelope::new(Event::ReadCursor(cursor(reader, 7))),
        Envelope::new(Event::DeliveredCursor(cursor(reader, 12))),
        Envelope::new(Event::ReadCursor(cursor(other, 2))),
        seen(reader, t - 1_000),
    ])
    .await;
    eventually("the second cursors", WITHIN, || async {
        cursors(reader).await == (10, 12)
    })
    .await;
    eventually("nothing pending", WITHIN, || async {
        w.pending().await == 0
    })
    .await;
    assert_eq!(cursors(reader).await, (10, 12));
    assert_eq!(cursors(other).await, (2, 4));
    let last_seen = w.store.user_by_id(reader).await.unwrap().last_seen;
    assert_eq!(last_seen.map(|d| d.timestamp_millis()), Some(t));
    worker.stop().await;
}

/// The gateway's send script will build entries in Lua; this one does what it will do (`INCR` for the
/// seq, `TIME` for the clock, `cmsgpack.pack`, `XADD … e`), and the worker must persist them as they are.
#[tokio::test]
async fn entries_built_by_a_lua_script_like_the_gateways_are_persisted() {
    use deadpool_redis::redis;
    let w = World::new(2, 1, 4).await;
    let (room, sender) = (w.rooms[0], w.users[1]);
    let shard = chat_bus::shard_of(room, w.shards);
    let script = redis::Script::new(
        r"
local seq = redis.call('INCR', KEYS[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local e = cmsgpack.pack({v = 1, t = 'message_created', id = ARGV[1], room_id = ARGV[2], seq = seq,
  sender_id = ARGV[3], kind = 'text', content = ARGV[4], created_at = now, traceparent = ARGV[5]})
return redis.call('XADD', KEYS[1], '*', 'e', e)
",
    );
    let seq_key = format!("{}:room:{room}:seq", w.bus.keys().shard_prefix(shard));
    let mut ids = Vec::new();
    for i in 1..=3 {
        let id = Uuid::now_v7();
        let mut c = w.redis().await;
        let _: String = script
            .key(w.bus.keys().stream(shard))
            .key(&seq_key)
            .arg(id.to_string())
            .arg(room.to_string())
            .arg(sender.to_string())
            .arg(format!("hello {i} from lua"))
            .arg("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .invoke_async(&mut *c)
            .await
            .unwrap();
        ids.push(id);
    }
    let worker = w.spawn_worker("a", &[]).await;
    eventually("three rows", WITHIN, || async {
        w.message_count().await == 3 && w.pending().await == 0
    })
    .await;
    for (i, id) in ids.iter().enumerate() {
        let m = w.store.message(*id).await.unwrap().unwrap();
        assert_eq!(
            (m.room_id, m.sender_id, m.seq),
            (room, sender, i as i64 + 1)
        );
        assert_eq!(
            m.content.as_deref(),
            Some(format!("hello {} from lua", i + 1).as_str())
        );
        assert!((Utc::now() - m.created_at).num_seconds().abs() < 600);
    }
    assert!(w.dead_letters().await.is_empty());
    worker.stop().await;
}
