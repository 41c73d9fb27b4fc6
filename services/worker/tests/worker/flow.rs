//! The normal flow: everything appended ends up in MySQL exactly once, in order; streams are trimmed.

use crate::helpers::{eventually, World};
use deadpool_redis::redis;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn ten_thousand_messages_across_many_rooms_become_exactly_ten_thousand_rows_in_seq_order() {
    let mut w = World::new(10, 50, 4).await;
    let msgs = w.messages_everywhere(200);
    assert_eq!(msgs.len(), 10_000);
    // Half before the worker starts (the group must read from the start), half while it runs.
    w.append(&msgs[..5_000]).await;
    let worker = w.spawn_worker("a", &[]).await;
    w.append(&msgs[5_000..]).await;

    eventually("10,000 rows", WITHIN, || async {
        w.message_count().await >= 10_000
    })
    .await;
    eventually("nothing pending", WITHIN, || async {
        w.pending().await == 0
    })
    .await;
    assert_eq!(w.message_count().await, 10_000);
    w.assert_rooms_complete(200).await;

    // Content and order as sent.
    let room = w.rooms[7];
    let page: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, content FROM messages WHERE room_id = ? ORDER BY seq")
            .bind(room)
            .fetch_all(w.store.pool())
            .await
            .unwrap();
    for (i, (seq, content)) in page.iter().enumerate() {
        assert_eq!(*seq, i as i64 + 1);
        assert_eq!(*content, format!("message {seq} of room {room}"));
    }

    // The HTTP port answers and the metrics count what was done.
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", worker.port);
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert!(health.status().is_success());
    let ready = client.get(format!("{base}/ready")).send().await.unwrap();
    assert!(ready.status().is_success());
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("chat_worker_events_total{event=\"message_created\"} 10000"),
        "{text}"
    );
    assert!(text.contains("chat_worker_stream_pending{shard=\"0\"}"));
    // Every worker series the dashboards and alerts use is exposed.
    // Read at run time: the image's build context has no scripts/.
    let contract = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/ops/metrics.txt"
    ))
    .expect("scripts/ops/metrics.txt");
    for name in contract
        .lines()
        .filter(|l| l.starts_with("worker "))
        .filter_map(|l| l.split_whitespace().nth(1))
    {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} in
{text}"
        );
    }
    assert!(text.contains("chat_worker_batches_total "), "{text}");
    assert!(!text.contains("chat_worker_batches_total 0\n"), "{text}");
    worker.stop().await;
}

#[tokio::test]
async fn streams_are_trimmed_only_below_what_every_group_has_acknowledged() {
    let mut w = World::new(2, 8, 2).await;
    let msgs = w.messages_everywhere(50);
    // Another group on shard 1 that never reads: shard 1 must keep everything for it.
    w.bus.ensure_persist_group(1).await.unwrap();
    let mut c = w.redis().await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(w.bus.keys().stream(1))
        .arg("indexer")
        .arg("0")
        .query_async(&mut *c)
        .await
        .unwrap();
    w.append(&msgs).await;
    let per_shard = |s: u16| msgs.iter().filter(|m| m.shard(w.shards) == s).count();
    let worker = w.spawn_worker("a", &[]).await;
    eventually("all rows", WITHIN, || async {
        w.message_count().await == msgs.len() as i64
    })
    .await;
    // Shard 0 is trimmed down to its last delivered entry.
    eventually("shard 0 trimmed", WITHIN, || async {
        w.stream_len(0).await <= 1
    })
    .await;
    assert_eq!(
        w.stream_len(1).await,
        per_shard(1),
        "the indexer group still needs them"
    );
    worker.stop().await;
}

#[tokio::test]
async fn two_workers_at_once_make_no_duplicates_and_both_make_progress() {
    let mut w = World::new(10, 40, 2).await;
    let msgs = w.messages_everywhere(250);
    let a = w.spawn_worker("a", &[("WORKER_BATCH_SIZE", "100")]).await;
    let b = w.spawn_worker("b", &[("WORKER_BATCH_SIZE", "100")]).await;
    // Trickle the messages in, so both consumers are waiting when entries arrive.
    for chunk in msgs.chunks(250) {
        w.append(chunk).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eventually("10,000 rows", WITHIN, || async {
        w.message_count().await >= 10_000
    })
    .await;
    eventually("nothing pending", WITHIN, || async {
        w.pending().await == 0
    })
    .await;
    assert_eq!(w.message_count().await, 10_000);
    w.assert_rooms_complete(250).await;
    let (by_a, by_b) = (a.messages_applied(), b.messages_applied());
    assert!(by_a > 0 && by_b > 0, "a applied {by_a}, b applied {by_b}");
    assert_eq!(by_a + by_b, 10_000, "each entry applied by one worker");
    a.stop().await;
    b.stop().await;
}
