//! Counters, latency histograms (HDR, microseconds) and process CPU from /proc.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Histograms record microseconds from 1 µs to one hour, 3 significant digits.
const MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants known to be valid.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| {
            #[allow(clippy::cast_precision_loss)]
            let v = us as f64 / 1000.0;
            (v * 1000.0).round() / 1000.0
        };
        if h.is_empty() {
            return Self {
                count: 0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                p999_ms: 0.0,
                max_ms: 0.0,
                mean_ms: 0.0,
            };
        }
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
        }
    }
}

/// Histograms shared by many connection tasks: sharded so they rarely wait on each other.
pub struct Sharded {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Sharded {
    pub fn new(n: usize) -> Self {
        Self {
            shards: (0..n.max(1)).map(|_| Mutex::new(histogram())).collect(),
        }
    }

    /// Records `us` (clamped to the histogram's range) in shard `key % n`.
    pub fn record(&self, key: usize, us: u64) {
        let mut h = self.shards[key % self.shards.len()]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        h.saturating_record(us.max(1));
    }

    /// All shards added together.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for s in &self.shards {
            let h = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Same bounds everywhere: adding cannot fail.
            let _ = all.add(&*h);
        }
        all
    }
}

/// The run's counters.
#[derive(Default)]
pub struct Counters {
    pub conns_ok: AtomicU64,
    pub conns_failed: AtomicU64,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub refused: AtomicU64,
    /// Every delivery read.
    pub deliveries: AtomicU64,
    /// Deliveries of messages sent in the measured window.
    pub deliveries_measured: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    pub fn error(&self, code: &str) {
        let mut e = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *e.entry(code.to_owned()).or_default() += 1;
    }

    pub fn error_n(&self, code: &str, n: usize) {
        let mut e = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *e.entry(code.to_owned()).or_default() += n as u64;
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}

/// How many messages should have been sent `t` seconds into a run at `rate`/s whose rate rises
/// linearly from 0 over `ramp` seconds.
pub fn target_sends(rate: f64, ramp: f64, t: f64) -> u64 {
    let t = t.max(0.0);
    let n = if ramp <= 0.0 {
        rate * t
    } else if t < ramp {
        rate * t * t / (2.0 * ramp)
    } else {
        rate * (ramp / 2.0 + (t - ramp))
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = n.floor() as u64;
    n
}

/// utime + stime of a process in seconds, or `None` when it cannot be read.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_secs(&stat, 100.0)
}

/// utime + stime from the text of `/proc/<pid>/stat` (the command name may hold spaces and parens).
pub fn parse_cpu_secs(stat: &str, ticks_per_sec: f64) -> Option<f64> {
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_sec)
}

/// Resident set size of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_inputs() {
        let mut h = histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).expect("in range"); // 1 ms … 1000 ms
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        // 3 significant digits: within 0.1 %.
        let near = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 0.001;
        assert!(near(l.p50_ms, 500.0), "{l:?}");
        assert!(near(l.p90_ms, 900.0), "{l:?}");
        assert!(near(l.p99_ms, 990.0), "{l:?}");
        assert!(near(l.p999_ms, 999.0), "{l:?}");
        assert!(near(l.max_ms, 1000.0), "{l:?}");
        assert!(near(l.mean_ms, 500.5), "{l:?}");
    }

    #[test]
    fn a_skewed_distribution() {
        let mut h = histogram();
        // 990 fast (2 ms), 9 slow (50 ms), 1 very slow (2 s)
        h.record_n(2000, 990).expect("in range");
        h.record_n(50_000, 9).expect("in range");
        h.record(2_000_000).expect("in range");
        let l = Latency::of(&h);
        assert_eq!((l.p50_ms, l.p90_ms), (2.0, 2.0));
        assert!((l.p99_ms - 2.0).abs() < 0.01, "{l:?}");
        assert!((l.p999_ms - 50.0).abs() < 0.05, "{l:?}");
        assert!((l.max_ms - 2000.0).abs() < 2.0, "{l:?}");
        assert_eq!(Latency::of(&histogram()).count, 0);
    }

    #[test]
    fn sharded_histograms_merge() {
        let s = Sharded::new(4);
        for i in 0..100u64 {
            s.record(usize::try_from(i).expect("small"), 1000 + i);
        }
        s.record(0, 0); // clamped to 1 µs
        s.record(1, u64::MAX); // clamped to the maximum
        let m = s.merged();
        assert_eq!(m.len(), 102);
        assert_eq!(m.min(), 1);
        assert!(m.max() >= MAX_US);
    }

    #[test]
    fn ramped_send_targets() {
        assert_eq!(target_sends(100.0, 0.0, 2.0), 200);
        // halfway up a 2 s ramp to 100/s: ¼ of the way in area
        assert_eq!(target_sends(100.0, 2.0, 1.0), 25);
        assert_eq!(target_sends(100.0, 2.0, 2.0), 100);
        assert_eq!(target_sends(100.0, 2.0, 3.0), 200);
        assert_eq!(target_sends(100.0, 2.0, -1.0), 0);
    }

    #[test]
    fn counters_and_proc_stat() {
        let c = Counters::default();
        c.error("RATE_LIMITED");
        c.error("RATE_LIMITED");
        c.error("DISCONNECTED");
        assert_eq!(c.errors().get("RATE_LIMITED"), Some(&2));
        assert_eq!(c.errors().len(), 2);
        let stat = "1234 (chat gw (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(parse_cpu_secs(stat, 100.0), Some(3.0));
        assert_eq!(parse_cpu_secs("garbage", 100.0), None);
        assert!(cpu_secs(std::process::id()).is_some());
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }
}
