//! `--verify-persisted`: after the run, count the rows of the run's rooms in the `messages` table until
//! they match the acks the tool received (or a timeout), so nothing acked is lost on the way to MySQL.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Serialize, PartialEq)]
pub struct Persistence {
    /// Messages acked by the servers (each one should become a row).
    pub expected: u64,
    /// Rows found in the run's rooms at the end.
    pub rows: u64,
    /// `expected - rows` when positive: acked but not stored.
    pub missing: u64,
    /// Seconds from the last send until the rows were all there (or the timeout).
    pub lag_after_last_send_secs: f64,
    /// Rows per second from the first send until all were stored.
    pub rows_per_sec: f64,
    pub complete: bool,
}

/// Polls `SELECT COUNT(*)` over `rooms` until it reaches `expected` or `timeout` passes.
///
/// # Errors
/// The database cannot be reached or queried.
pub async fn verify(
    db: &str,
    rooms: &[Uuid],
    expected: u64,
    first_send: Instant,
    last_send: Instant,
    timeout: Duration,
) -> anyhow::Result<Persistence> {
    let store = chat_store::Store::connect(db, 2)
        .await
        .context("connecting to the --verify-persisted database")?;
    let deadline = Instant::now() + timeout;
    let mut rows;
    loop {
        rows = count(store.pool(), rooms).await?;
        if rows >= expected || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let done = Instant::now();
    store.pool().close().await;
    Ok(summarise(expected, rows, first_send, last_send, done))
}

async fn count(pool: &sqlx::MySqlPool, rooms: &[Uuid]) -> anyhow::Result<u64> {
    let mut total = 0i64;
    for chunk in rooms.chunks(1000) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!("SELECT COUNT(*) FROM messages WHERE room_id IN ({marks})");
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for r in chunk {
            q = q.bind(*r);
        }
        total += q.fetch_one(pool).await.context("counting messages")?;
    }
    Ok(u64::try_from(total).unwrap_or(0))
}

/// The figures from the counts and times.
pub fn summarise(
    expected: u64,
    rows: u64,
    first_send: Instant,
    last_send: Instant,
    done: Instant,
) -> Persistence {
    let span = done.saturating_duration_since(first_send).as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rows_per_sec = if span > 0.0 { rows as f64 / span } else { 0.0 };
    Persistence {
        expected,
        rows,
        missing: expected.saturating_sub(rows),
        lag_after_last_send_secs: (done.saturating_duration_since(last_send).as_secs_f64()
            * 1000.0)
            .round()
            / 1000.0,
        rows_per_sec: rows_per_sec.round(),
        complete: rows >= expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_from_counts() {
        let t0 = Instant::now();
        let last = t0 + Duration::from_secs(8);
        let done = t0 + Duration::from_secs(10);
        let p = summarise(1000, 1000, t0, last, done);
        assert_eq!(
            p,
            Persistence {
                expected: 1000,
                rows: 1000,
                missing: 0,
                lag_after_last_send_secs: 2.0,
                rows_per_sec: 100.0,
                complete: true
            }
        );
        let p = summarise(1000, 990, t0, last, done);
        assert_eq!((p.missing, p.complete), (10, false));
        // more rows than acks (a refused-then-stored retry, say) is complete, nothing missing
        assert_eq!(summarise(5, 6, t0, last, done).missing, 0);
    }
}
