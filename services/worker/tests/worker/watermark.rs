//! The rooms' persisted watermarks (`P:v1:{s}:room:<r>:persisted`): raised after each acknowledged
//! batch to the highest seq below every pending entry, past dead letters, never lowered.

use crate::helpers::{eventually, World};
use chat_bus::stream::Event;
use chat_bus::PERSIST_GROUP;
use deadpool_redis::redis;
use std::time::Duration;
use uuid::Uuid;

const WITHIN: Duration = Duration::from_secs(30);

async fn mark(w: &World, room: Uuid) -> Option<i64> {
    let mut c = w.redis().await;
    redis::cmd("GET")
        .arg(w.bus.keys().room_persisted(0, room))
        .query_async(&mut *c)
        .await
        .unwrap()
}

async fn stored_in(w: &World, room: Uuid) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages WHERE room_id = ?")
        .bind(room)
        .fetch_one(w.store.pool())
        .await
        .unwrap();
    n
}

#[tokio::test]
async fn the_watermark_waits_for_older_pending_entries_passes_dead_letters_and_never_goes_down() {
    // One shard, so every room's entries share one stream.
    let mut w = World::new(2, 2, 1).await;
    let (room, other) = (w.rooms[0], w.rooms[1]);
    let stream = w.bus.keys().stream(0);
    let mut c = w.redis().await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(PERSIST_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut *c)
        .await
        .unwrap();

    // Seqs 1..5 are read by a replica that then stalls (pending, not stored).
    let first = w.messages_in(room, 5);
    w.append(&first).await;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(PERSIST_GROUP)
        .arg("stalled")
        .arg("COUNT")
        .arg(5)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut *c)
        .await
        .unwrap();

    // The worker stores 6..10 but must not mark them: 1..5 are not in MySQL.
    let worker = w
        .spawn_worker("marker", &[("WORKER_CLAIM_IDLE_MS", "2000")])
        .await;
    let more = w.messages_in(room, 5);
    w.append(&more).await;
    eventually("seqs 6..10 stored", WITHIN, || async {
        stored_in(&w, room).await == 5
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stored_in(&w, room).await, 5, "1..5 still pending elsewhere");
    assert_eq!(
        mark(&w, room).await,
        None,
        "no watermark past seqs another replica holds"
    );

    // Once the stalled entries are taken over and stored, the held-back candidate passes (without
    // a new message in the room).
    eventually("the watermark at 10", WITHIN, || async {
        mark(&w, room).await == Some(10)
    })
    .await;
    assert_eq!(stored_in(&w, room).await, 10);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(w.bus.keys().room_persisted(0, room))
        .query_async(&mut *c)
        .await
        .unwrap();
    assert!(
        ttl > 23 * 3600 * 1000,
        "expires with the room's keys: {ttl}"
    );

    // A dead-lettered message (unknown sender) counts as handled: MySQL will never take it.
    let mut msgs = w.messages_in(other, 3);
    if let Event::MessageCreated(m) = &mut msgs[1].event {
        m.sender_id = Uuid::now_v7();
    }
    w.append(&msgs).await;
    eventually("the other room's watermark at 3", WITHIN, || async {
        mark(&w, other).await == Some(3)
    })
    .await;
    assert_eq!(stored_in(&w, other).await, 2);
    assert_eq!(w.dead_letters().await.len(), 1);

    // Never lowered: a mark above what this batch holds stays (batches may commit out of order).
    let _: () = redis::cmd("SET")
        .arg(w.bus.keys().room_persisted(0, room))
        .arg(1000)
        .query_async(&mut *c)
        .await
        .unwrap();
    let more = w.messages_in(room, 3);
    w.append(&more).await;
    eventually(
        "seqs 11..13 stored and their batch's marks handled",
        WITHIN,
        || async {
            let mut c = w.redis().await;
            let ttl: i64 = redis::cmd("PTTL")
                .arg(w.bus.keys().room_persisted(0, room))
                .query_async(&mut *c)
                .await
                .unwrap();
            // The SET above left no TTL; the worker's script refreshes it.
            stored_in(&w, room).await == 13 && ttl > 0
        },
    )
    .await;
    assert_eq!(mark(&w, room).await, Some(1000));
    worker.stop().await;
}
