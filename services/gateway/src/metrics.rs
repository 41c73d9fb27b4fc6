//! The gateway's metrics, in atomics, written out in the Prometheus text format at `/metrics`.

use chat_telemetry::Histogram;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Client events counted by name; anything else is `other`.
pub const EVENTS_IN: [&str; 12] = [
    "join_room",
    "leave_room",
    "send_message",
    "typing",
    "edit_message",
    "delete_message",
    "mark_read",
    "mark_message_read",
    "read_message",
    "message_delivered",
    "other",
    "invalid",
];

/// Room events fanned out, by name; anything else is `other`.
pub const EVENTS_OUT: [&str; 12] = [
    "receive_message",
    "message_edited",
    "message_deleted",
    "message_read",
    "delivered",
    "typing",
    "user_status",
    "user_joined",
    "user_left",
    "room_deleted",
    "role_changed",
    "other",
];

/// Error codes counted in `chat_gateway_rejected_total`.
pub const CODES: [&str; 7] = [
    "VALIDATION",
    "FORBIDDEN",
    "NOT_FOUND",
    "RATE_LIMITED",
    "NOT_REPLICATED",
    "UNAVAILABLE",
    "UNAUTHORIZED",
];

/// Counters and gauges of one gateway.
#[derive(Default)]
pub struct Metrics {
    pub connections: AtomicI64,
    pub rooms_subscribed: AtomicI64,
    pub events_in: [AtomicU64; EVENTS_IN.len()],
    pub events_out: [AtomicU64; EVENTS_OUT.len()],
    /// Frames queued on sockets by the fan-out.
    pub deliveries: AtomicU64,
    pub rejected: [AtomicU64; CODES.len()],
    /// Volatile frames shed because a socket's queue was under pressure.
    pub queue_drops: AtomicU64,
    /// Sockets disconnected because a durable frame did not fit their queue.
    pub slow_disconnects: AtomicU64,
    /// Gaps in a room's event positions refilled from the room log.
    pub gaps_refilled: AtomicU64,
    pub redis_errors: AtomicU64,
    pub mysql_errors: AtomicU64,
    pub pubsub_reconnects: AtomicU64,
    /// Times Redis had lost this gateway's connections and they were written again.
    pub presence_resyncs: AtomicU64,
    /// `send_message` from the event's arrival to its ack.
    pub send_latency: Histogram,
    /// From the send script's clock (the event position) to the frame queued on local sockets.
    pub deliver_latency: Histogram,
    /// Round trips of Redis calls on the send path.
    pub redis_latency: Histogram,
}

fn index(names: &[&str], name: &str) -> usize {
    names
        .iter()
        .position(|n| *n == name)
        .unwrap_or(names.len() - 1)
}

impl Metrics {
    pub fn event_in(&self, name: &str) {
        let i = EVENTS_IN
            .iter()
            .position(|n| *n == name)
            .unwrap_or(EVENTS_IN.len() - 2);
        self.events_in[i].fetch_add(1, Relaxed);
    }

    pub fn event_out(&self, name: &str, n: u64) {
        self.events_out[index(&EVENTS_OUT, name)].fetch_add(n, Relaxed);
    }

    pub fn rejected(&self, code: &str) {
        if let Some(i) = CODES.iter().position(|c| *c == code) {
            self.rejected[i].fetch_add(1, Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(8192);
        let gauge = |o: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        gauge(
            &mut o,
            "chat_gateway_connections",
            "Connected sockets.",
            self.connections.load(Relaxed),
        );
        gauge(
            &mut o,
            "chat_gateway_rooms_subscribed",
            "Room channels this gateway is subscribed to.",
            self.rooms_subscribed.load(Relaxed),
        );
        let _ = writeln!(
            o,
            "# HELP chat_gateway_events_in_total Client events received, by event.\n# TYPE chat_gateway_events_in_total counter"
        );
        for (n, v) in EVENTS_IN.iter().zip(&self.events_in) {
            let _ = writeln!(
                o,
                "chat_gateway_events_in_total{{event=\"{n}\"}} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            o,
            "# HELP chat_gateway_events_out_total Room events fanned out to local sockets (one per socket), by event.\n# TYPE chat_gateway_events_out_total counter"
        );
        for (n, v) in EVENTS_OUT.iter().zip(&self.events_out) {
            let _ = writeln!(
                o,
                "chat_gateway_events_out_total{{event=\"{n}\"}} {}",
                v.load(Relaxed)
            );
        }
        counter(
            &mut o,
            "chat_gateway_deliveries_total",
            "Frames queued on sockets by the fan-out.",
            self.deliveries.load(Relaxed),
        );
        let _ = writeln!(
            o,
            "# HELP chat_gateway_rejected_total Client events and connections refused, by error code.\n# TYPE chat_gateway_rejected_total counter"
        );
        for (c, v) in CODES.iter().zip(&self.rejected) {
            let _ = writeln!(
                o,
                "chat_gateway_rejected_total{{code=\"{c}\"}} {}",
                v.load(Relaxed)
            );
        }
        counter(
            &mut o,
            "chat_gateway_queue_drops_total",
            "Volatile frames shed under back-pressure.",
            self.queue_drops.load(Relaxed),
        );
        counter(
            &mut o,
            "chat_gateway_slow_disconnects_total",
            "Sockets disconnected because their send queue overflowed.",
            self.slow_disconnects.load(Relaxed),
        );
        counter(
            &mut o,
            "chat_gateway_gaps_refilled_total",
            "Pub/sub gaps refilled from room logs.",
            self.gaps_refilled.load(Relaxed),
        );
        counter(
            &mut o,
            "chat_gateway_redis_errors_total",
            "Redis failures.",
            self.redis_errors.load(Relaxed),
        );
        counter(
            &mut o,
            "chat_gateway_mysql_errors_total",
            "MySQL failures.",
            self.mysql_errors.load(Relaxed),
        );
        counter(
            &mut o,
            "chat_gateway_pubsub_reconnects_total",
            "Pub/sub connection re-establishments (on a cluster: re-subscriptions after a node loss).",
            self.pubsub_reconnects.load(Relaxed),
        );
        counter(
            &mut o,
            "chat_gateway_presence_resyncs_total",
            "Times Redis had lost this gateway's connections and they were written again.",
            self.presence_resyncs.load(Relaxed),
        );
        counter(
            &mut o,
            "chat_gateway_unreplicated_acks_total",
            "Writes acknowledged with fewer Redis replicas than REDIS_WAIT_REPLICAS because their master had fewer (after a failover, until a replacement replica synced).",
            chat_realtime::unreplicated_acks_total(),
        );
        counter(
            &mut o,
            "chat_gateway_unsaved_trimmed_total",
            "Messages MySQL did not have yet trimmed from a room's Redis log at its hard cap (10 x RECENT_LOG_SIZE): missing from history until the worker stores them.",
            chat_realtime::unsaved_trimmed_total(),
        );
        self.send_latency.render(
            &mut o,
            "chat_gateway_send_latency_seconds",
            "send_message from arrival to ack.",
        );
        self.deliver_latency.render(
            &mut o,
            "chat_gateway_deliver_latency_seconds",
            "From the send script (Redis clock) to the frame queued on local sockets.",
        );
        self.redis_latency.render(
            &mut o,
            "chat_gateway_redis_latency_seconds",
            "Redis round trips on the send path.",
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_gateway_name_of_the_contract_is_rendered() {
        // Read at run time: the image's build context has no scripts/.
        let contract = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/ops/metrics.txt"
        ))
        .expect("scripts/ops/metrics.txt");
        let m = Metrics::default();
        m.event_in("send_message");
        m.event_out("receive_message", 2);
        m.send_latency.observe(Duration::from_millis(2));
        let text = m.render();
        let mut n = 0;
        for line in contract.lines().filter(|l| l.starts_with("gateway ")) {
            let mut parts = line.split_whitespace().skip(1);
            let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} ({kind}) missing from\n{text}"
            );
            n += 1;
        }
        assert_eq!(n, 18);
        assert!(text.contains("chat_gateway_events_in_total{event=\"send_message\"} 1"));
        assert!(text.contains("chat_gateway_events_out_total{event=\"receive_message\"} 2"));
        assert!(text.contains("chat_gateway_send_latency_seconds_bucket{le=\"0.002\"} 1"));
    }
}
