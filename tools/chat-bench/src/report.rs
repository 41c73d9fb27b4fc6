//! The summary: a table on stdout and the same figures as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::cli::{Cli, Plan};
use crate::client::Shared;
use crate::stats::{Counters, Latency};

/// Everything the summary is made from.
pub struct Inputs<'a> {
    pub plan: &'a Plan,
    pub cli: &'a Cli,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub connect_secs: f64,
    pub measured_secs: f64,
    pub shared: &'a Shared,
    /// Deliveries read (of any message) during the measured window.
    pub deliveries_during_window: u64,
    /// (pid, CPU-seconds over the window, RSS KiB at its end, RSS KiB before connecting)
    pub watched: Vec<(u32, f64, Option<u64>, Option<u64>)>,
    pub self_cpu: f64,
    pub persistence: Option<crate::persist::Persistence>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub scenario: Scenario,
    pub started_at: String,
    pub connections: Connections,
    pub messages: Messages,
    pub deliveries: Deliveries,
    /// Publish (the tool writing `send_message`) → `receive_message` read by a member.
    pub latency: Latency,
    /// Publish → the sender reading its ack.
    pub ack_latency: Latency,
    pub errors: BTreeMap<String, u64>,
    pub cpu: Cpu,
    /// With --verify-persisted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistence: Option<crate::persist::Persistence>,
    /// The publish → receive histogram itself: `[microseconds, count]` for every recorded bucket
    /// (3 significant digits), so that the runs of several processes can be merged exactly.
    pub latency_histogram: Vec<[u64; 2]>,
}

#[derive(Debug, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub urls: Vec<String>,
    pub connections: usize,
    pub rooms: usize,
    pub members_per_room: usize,
    pub senders: usize,
    pub rate_per_sec: f64,
    pub payload_bytes: usize,
    pub users: usize,
    pub source_ips: u8,
    pub ramp_up_secs: f64,
    pub duration_secs: f64,
    pub users_from: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Connections {
    pub ok: u64,
    pub failed: u64,
    pub open_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct Messages {
    pub sent: u64,
    pub acked: u64,
    pub refused: u64,
}

#[derive(Debug, Serialize)]
pub struct Deliveries {
    /// Every `receive_message` read.
    pub total: u64,
    /// Deliveries of messages sent during the measured window.
    pub measured: u64,
    /// Deliveries read per second during the measured window.
    pub per_sec: f64,
    pub measured_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct Cpu {
    pub watched: Vec<Watched>,
    /// All watched processes together, per million deliveries of the window.
    pub watched_secs_per_million_deliveries: Option<f64>,
    /// RSS growth of all watched processes together (end of the window less before connecting) per
    /// open connection.
    pub watched_rss_growth_kib_per_connection: Option<f64>,
    pub bench_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct Watched {
    pub pid: u32,
    pub cpu_secs: f64,
    pub rss_kib: Option<u64>,
    /// RSS at the end of the window less RSS before the tool connected.
    pub rss_growth_kib: Option<i64>,
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

impl Summary {
    pub fn build(i: Inputs<'_>) -> Self {
        let c = &i.shared.counters;
        let p = i.plan;
        #[allow(clippy::cast_precision_loss)]
        let per_sec = if i.measured_secs > 0.0 {
            i.deliveries_during_window as f64 / i.measured_secs
        } else {
            0.0
        };
        let watched_cpu: f64 = i.watched.iter().map(|w| w.1).sum();
        let latency = i.shared.latency.merged();
        let conns_ok = Counters::get(&c.conns_ok);
        let growth: Option<i64> = i
            .watched
            .iter()
            .map(|w| {
                w.2.zip(w.3)
                    .map(|(a, b)| i64::try_from(a).unwrap_or(0) - i64::try_from(b).unwrap_or(0))
            })
            .sum();
        #[allow(clippy::cast_precision_loss)]
        let rss_per_conn = growth
            .filter(|_| conns_ok > 0 && !i.watched.is_empty())
            .map(|g| round(g as f64 / conns_ok as f64, 2));
        #[allow(clippy::cast_precision_loss)]
        let per_million = (!i.watched.is_empty() && i.deliveries_during_window > 0)
            .then(|| round(watched_cpu / (i.deliveries_during_window as f64 / 1e6), 3));
        Self {
            scenario: Scenario {
                name: p.name,
                urls: i.cli.urls.iter().map(|u| u.ws_url.clone()).collect(),
                connections: p.connections,
                rooms: p.rooms,
                members_per_room: p.members,
                senders: p.senders,
                rate_per_sec: p.rate,
                payload_bytes: p.payload,
                users: p.users,
                source_ips: i.cli.source_ips,
                ramp_up_secs: i.cli.ramp_up.as_secs_f64(),
                duration_secs: i.cli.duration.as_secs_f64(),
                users_from: if i.cli.users_from_seed.is_some() {
                    "database"
                } else {
                    "api"
                },
            },
            started_at: i.started_at.to_rfc3339(),
            connections: Connections {
                ok: Counters::get(&c.conns_ok),
                failed: Counters::get(&c.conns_failed),
                open_secs: round(i.connect_secs, 3),
            },
            messages: Messages {
                sent: Counters::get(&c.sent),
                acked: Counters::get(&c.acked),
                refused: Counters::get(&c.refused),
            },
            deliveries: Deliveries {
                total: Counters::get(&c.deliveries),
                measured: Counters::get(&c.deliveries_measured),
                per_sec: round(per_sec, 1),
                measured_secs: round(i.measured_secs, 3),
            },
            latency: Latency::of(&latency),
            ack_latency: Latency::of(&i.shared.ack_latency.merged()),
            errors: c.errors(),
            cpu: Cpu {
                watched: i
                    .watched
                    .iter()
                    .map(|(pid, cpu, rss, rss0)| Watched {
                        pid: *pid,
                        cpu_secs: round(*cpu, 3),
                        rss_kib: *rss,
                        rss_growth_kib: rss.zip(*rss0).map(|(a, b)| {
                            i64::try_from(a).unwrap_or(0) - i64::try_from(b).unwrap_or(0)
                        }),
                    })
                    .collect(),
                watched_secs_per_million_deliveries: per_million,
                watched_rss_growth_kib_per_connection: rss_per_conn,
                bench_secs: round(i.self_cpu, 3),
            },
            persistence: i.persistence,
            latency_histogram: latency
                .iter_recorded()
                .map(|v| [v.value_iterated_to(), v.count_at_value()])
                .collect(),
        }
    }

    /// The human summary.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let s = &self.scenario;
        let _ = writeln!(
            o,
            "scenario {}: {} connections, {} room(s) × {} members, {} sender(s) at {}/s, {:.1} s measured after {:.1} s ramp-up",
            s.name, s.connections, s.rooms, s.members_per_room, s.senders, s.rate_per_sec,
            self.deliveries.measured_secs, s.ramp_up_secs
        );
        let mut row = |k: &str, v: String| {
            let _ = writeln!(o, "  {k:<38} {v}");
        };
        row(
            "connections ok / failed",
            format!(
                "{} / {} (opened in {:.1} s)",
                self.connections.ok, self.connections.failed, self.connections.open_secs
            ),
        );
        row(
            "messages sent / acked / refused",
            format!(
                "{} / {} / {}",
                self.messages.sent, self.messages.acked, self.messages.refused
            ),
        );
        row(
            "deliveries total / measured",
            format!("{} / {}", self.deliveries.total, self.deliveries.measured),
        );
        row("deliveries/s", format!("{:.0}", self.deliveries.per_sec));
        for (name, l) in [
            ("latency", &self.latency),
            ("ack latency", &self.ack_latency),
        ] {
            row(
                &format!("{name} ms p50/p90/p99/p999/max"),
                if l.count == 0 {
                    "-".into()
                } else {
                    format!(
                        "{:.2} / {:.2} / {:.2} / {:.2} / {:.2}  (n={})",
                        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
                    )
                },
            );
        }
        for w in &self.cpu.watched {
            row(
                &format!("pid {} CPU-s / RSS / growth", w.pid),
                format!(
                    "{:.2} / {} / {}",
                    w.cpu_secs,
                    w.rss_kib.map_or_else(|| "-".into(), |k| format!("{k} KiB")),
                    w.rss_growth_kib
                        .map_or_else(|| "-".into(), |k| format!("{k} KiB"))
                ),
            );
        }
        if let Some(k) = self.cpu.watched_rss_growth_kib_per_connection {
            row("watched RSS growth per connection", format!("{k:.2} KiB"));
        }
        if let Some(m) = self.cpu.watched_secs_per_million_deliveries {
            row("watched CPU-s per 1M deliv.", format!("{m:.3}"));
        }
        row("bench CPU-s", format!("{:.2}", self.cpu.bench_secs));
        if let Some(p) = &self.persistence {
            row(
                "stored rows / acked (missing)",
                format!("{} / {} ({})", p.rows, p.expected, p.missing),
            );
            row(
                "stored: lag after last send, rows/s",
                format!("{:.2} s, {:.0}", p.lag_after_last_send_secs, p.rows_per_sec),
            );
        }
        if self.errors.is_empty() {
            row("errors", "none".into());
        } else {
            for (code, n) in &self.errors {
                row(&format!("error {code}"), n.to_string());
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Sharded;
    use clap::Parser;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::time::Instant;

    #[test]
    fn summary_figures_json_and_table() {
        let cli = Cli::try_parse_from(
            "chat-bench --url http://127.0.0.1:3000 --api http://127.0.0.1:8080 --duration 2s \
             fanout --members 10 --senders 2 --rate 5"
                .split_whitespace(),
        )
        .expect("parses");
        let plan = cli.plan().expect("valid");
        let shared = Shared {
            origin: Instant::now(),
            counters: Counters::default(),
            latency: Sharded::new(4),
            ack_latency: Sharded::new(2),
            window: (AtomicU64::new(0), AtomicU64::new(u64::MAX)),
            payload: 0,
        };
        let c = &shared.counters;
        c.conns_ok.store(10, Relaxed);
        c.sent.store(11, Relaxed);
        c.acked.store(10, Relaxed);
        c.refused.store(1, Relaxed);
        c.deliveries.store(100, Relaxed);
        c.deliveries_measured.store(90, Relaxed);
        c.error("RATE_LIMITED");
        for i in 1..=90u64 {
            shared
                .latency
                .record(usize::try_from(i).expect("small"), i * 100); // 0.1 … 9 ms
        }
        let s = Summary::build(Inputs {
            plan: &plan,
            cli: &cli,
            started_at: chrono::Utc::now(),
            connect_secs: 0.25,
            measured_secs: 2.0,
            shared: &shared,
            deliveries_during_window: 80,
            watched: vec![
                (42, 0.5, Some(2048), Some(1024)),
                (43, 0.3, Some(100), Some(60)),
            ],
            self_cpu: 0.1,
            persistence: None,
        });
        assert_eq!(s.deliveries.per_sec, 40.0);
        assert_eq!(s.latency.count, 90);
        assert!((s.latency.p50_ms - 4.5).abs() < 0.01, "{:?}", s.latency);
        assert_eq!(s.ack_latency.count, 0);
        // 0.8 CPU-s over 80 deliveries = 10,000 CPU-s per million
        assert_eq!(s.cpu.watched_secs_per_million_deliveries, Some(10_000.0));
        // (1024 + 40) KiB over 10 connections
        assert_eq!(s.cpu.watched_rss_growth_kib_per_connection, Some(106.4));
        let json = serde_json::to_value(&s).expect("serialises");
        assert_eq!(json["messages"]["refused"], 1);
        assert_eq!(json["errors"]["RATE_LIMITED"], 1);
        assert_eq!(json["scenario"]["name"], "fanout");
        assert_eq!(json["scenario"]["users_from"], "api");
        assert!(json.get("persistence").is_none());
        // The histogram's buckets add up to its count, values in µs (0.1 … 9 ms).
        let buckets = json["latency_histogram"].as_array().expect("an array");
        let total: u64 = buckets.iter().map(|b| b[1].as_u64().expect("count")).sum();
        assert_eq!(total, 90);
        assert_eq!(buckets[0][0], 100);
        let last = buckets[buckets.len() - 1][0].as_u64().expect("µs");
        assert!((9000..9010).contains(&last), "{last}");
        let table = s.table();
        assert!(table.contains("11 / 10 / 1"), "{table}");
        assert!(table.contains("error RATE_LIMITED"), "{table}");
        assert!(table.contains("pid 42"), "{table}");
    }
}
