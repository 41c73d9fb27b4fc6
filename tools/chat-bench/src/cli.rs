//! Flags, their parsers, and the run plan derived from them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// The JWT secret the services use when none is configured (`chat_config::DEV_JWT_SECRET`).
pub const DEV_JWT_SECRET: &str = "dev-only-insecure-jwt-secret-change-me-0123456789";

/// Load tool for the chat gateway: idle connections, rooms with senders, one-room fan-out.
///
/// The server's per-user message rate limit must be raised for runs that send
/// (`MESSAGE_RATE_LIMIT=1000000` on the gateways), or most sends come back `RATE_LIMITED`.
#[derive(Parser, Debug)]
#[command(name = "chat-bench", version)]
pub struct Cli {
    /// Gateway base URL (http://host:port or ws://host:port); repeat or comma-separate for several,
    /// connections are spread over them round-robin.
    #[arg(long = "url", value_name = "URL", required = true, value_delimiter = ',', value_parser = parse_gateway_url)]
    pub urls: Vec<GatewayUrl>,

    /// REST base URL of the API (http://host:port): users are registered through
    /// `POST /api/v1/auth/register` and rooms created through `POST /api/v1/rooms`.
    #[arg(long, value_parser = parse_http_base, required_unless_present = "users_from_seed",
          conflicts_with = "users_from_seed")]
    pub api: Option<String>,

    /// Instead of the API, mint users and rooms directly in this database (mysql://user:pass@host/db,
    /// the deployment's own) and sign their access tokens with --jwt-secret. For local runs.
    #[arg(long, value_name = "DATABASE_URL")]
    pub users_from_seed: Option<String>,

    /// The JWT secret of the deployment (with --users-from-seed); defaults to the services' dev secret.
    #[arg(long, env = "JWT_SECRET", default_value = DEV_JWT_SECRET, hide_default_value = true,
          hide_env_values = true)]
    pub jwt_secret: String,

    /// Distinct users; connections beyond that reuse them round-robin (default: one per connection).
    #[arg(long, value_parser = parse_positive)]
    pub users: Option<usize>,

    /// Spread client sockets over source addresses 127.0.0.1 … 127.0.0.N (loopback targets only), to
    /// pass the ~28k ephemeral ports per source address.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_ips: u8,

    /// Connections being opened at once.
    #[arg(long, default_value_t = 128, value_parser = parse_positive)]
    pub connect_concurrency: usize,

    /// Time allowed for all connections to open (and join).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Warm-up once connected: the send rate rises linearly to --rate; not measured.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub ramp_up: Duration,

    /// Measured time after the ramp-up.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Time to wait for in-flight deliveries and acks after the last send.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub drain: Duration,

    /// Also report CPU-seconds (and RSS) of these processes over the measured time (e.g. the
    /// gateways' PIDs); repeat or comma-separate.
    #[arg(long = "watch-pid", value_name = "PID", value_delimiter = ',')]
    pub watch_pids: Vec<u32>,

    /// After the run, count the rows of the run's rooms in this database's `messages` table until they
    /// match the acks received (needs the persistence worker running), and report what is missing.
    #[arg(long, value_name = "DATABASE_URL")]
    pub verify_persisted: Option<String>,

    /// How long --verify-persisted waits for the rows.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub persist_timeout: Duration,

    /// Several processes in one run (each connection is a file, and a process may hold only so many):
    /// once connected, create this file...
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,

    /// ...and wait until this file exists before the ramp-up starts (at most --connect-timeout), so
    /// every process measures the same window.
    #[arg(long, value_name = "FILE")]
    pub start_file: Option<PathBuf>,

    /// Write the summary as JSON to this file (with the latency histogram, so that the summaries of
    /// several processes can be merged).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write the latency distribution (delivery and ack, by percentile) as an SVG to this file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,

    /// No progress line and no phase messages on stderr.
    #[arg(long, short)]
    pub quiet: bool,

    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum Scenario {
    /// N connections that only answer pings (memory per connection with --watch-pid).
    Idle {
        /// Connections to open.
        #[arg(long, short = 'n', value_parser = parse_positive)]
        connections: usize,
    },
    /// R rooms of M members each; S senders (spread over the rooms) at a total rate.
    Rooms(RoomsArgs),
    /// One room of M members; S of them send at a total rate.
    Fanout(FanoutArgs),
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct RoomsArgs {
    /// Rooms.
    #[arg(long, value_parser = parse_positive)]
    pub rooms: usize,
    /// Members (connections) per room.
    #[arg(long, value_parser = parse_positive)]
    pub members: usize,
    #[command(flatten)]
    pub send: SendArgs,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct FanoutArgs {
    /// Members (connections) of the room.
    #[arg(long, value_parser = parse_positive)]
    pub members: usize,
    #[command(flatten)]
    pub send: SendArgs,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct SendArgs {
    /// Members that send (each on its own receiving connection).
    #[arg(long, default_value_t = 1, value_parser = parse_positive)]
    pub senders: usize,
    /// Messages per second, all senders together.
    #[arg(long, default_value = "10", value_parser = parse_rate)]
    pub rate: f64,
    /// Bytes of padding added to each message's content (content is at most 4000 characters).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=3900))]
    pub payload: u16,
}

/// What a run does, derived from the flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: &'static str,
    pub connections: usize,
    /// 0 for idle: no room joined.
    pub rooms: usize,
    pub members: usize,
    pub senders: usize,
    pub rate: f64,
    pub payload: usize,
    pub users: usize,
}

impl Plan {
    /// The room of connection `i` (`None` when idle).
    pub fn room_of(&self, i: usize) -> Option<usize> {
        (self.rooms > 0).then(|| i / self.members)
    }

    /// The connection index of sender `k`: senders are spread over the rooms first.
    pub fn sender_conn(&self, k: usize) -> usize {
        let r = self.rooms.max(1);
        (k % r) * self.members + k / r
    }
}

impl Cli {
    /// Checks the flags against each other and derives the plan.
    ///
    /// # Errors
    /// A message naming the offending flags.
    pub fn plan(&self) -> Result<Plan, String> {
        let (name, rooms, members, send) = match &self.scenario {
            Scenario::Idle { connections } => ("idle", 0, *connections, None),
            Scenario::Rooms(a) => ("rooms", a.rooms, a.members, Some(&a.send)),
            Scenario::Fanout(a) => ("fanout", 1, a.members, Some(&a.send)),
        };
        let connections = if rooms == 0 {
            members
        } else {
            rooms
                .checked_mul(members)
                .ok_or("--rooms × --members is too large")?
        };
        let (senders, rate, payload) = match send {
            Some(s) => {
                if s.senders > connections {
                    return Err(format!(
                        "--senders {} is more than the {connections} connections",
                        s.senders
                    ));
                }
                (s.senders, s.rate, usize::from(s.payload))
            }
            None => (0, 0.0, 0),
        };
        let users = self.users.unwrap_or(connections).min(connections);
        if self.users_from_seed.is_some()
            && !self
                .users_from_seed
                .as_deref()
                .is_some_and(|u| u.starts_with("mysql://"))
        {
            return Err("--users-from-seed takes a mysql:// database URL".into());
        }
        if self
            .verify_persisted
            .as_deref()
            .is_some_and(|u| !u.starts_with("mysql://"))
        {
            return Err("--verify-persisted takes a mysql:// database URL".into());
        }
        if self.verify_persisted.is_some() && send.is_none() {
            return Err("--verify-persisted needs a scenario that sends (rooms or fanout)".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be more than 0".into());
        }
        Ok(Plan {
            name,
            connections,
            rooms,
            members: if rooms == 0 { 0 } else { members },
            senders,
            rate,
            payload,
            users,
        })
    }
}

/// A gateway to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayUrl {
    pub host: String,
    pub port: u16,
    /// The WebSocket URL of the Socket.IO endpoint.
    pub ws_url: String,
}

/// `http://host[:port][/prefix]` or `ws://…` → the Socket.IO WebSocket URL under it.
///
/// # Errors
/// Other schemes (TLS is not supported: point the tool at the gateways' plain port), no host.
pub fn parse_gateway_url(s: &str) -> Result<GatewayUrl, String> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| format!("{s:?}: expected http://host:port or ws://host:port"))?;
    match scheme {
        "http" | "ws" => {}
        "https" | "wss" => {
            return Err(format!(
                "{s:?}: TLS is not supported, point at the gateway's plain http port"
            ))
        }
        other => return Err(format!("{s:?}: unsupported scheme {other:?}")),
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = split_host_port(authority).map_err(|e| format!("{s:?}: {e}"))?;
    let mut prefix = path.trim_end_matches('/').to_owned();
    if prefix.ends_with("/socket.io") {
        prefix.truncate(prefix.len() - "/socket.io".len());
    }
    let host_in_url = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    Ok(GatewayUrl {
        ws_url: format!("ws://{host_in_url}:{port}{prefix}/socket.io/?EIO=4&transport=websocket"),
        host,
        port,
    })
}

fn split_host_port(authority: &str) -> Result<(String, u16), String> {
    if authority.is_empty() {
        return Err("no host".into());
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unclosed [")?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
        None => 80,
    };
    Ok((host.to_owned(), port))
}

/// An `http://host:port[/prefix]` base URL, without a trailing slash.
///
/// # Errors
/// Not http (the tool has no TLS), no host.
pub fn parse_http_base(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .ok_or_else(|| format!("{s:?}: expected http://host:port (TLS is not supported)"))?;
    let authority = rest.split('/').next().unwrap_or("");
    split_host_port(authority).map_err(|e| format!("{s:?}: {e}"))?;
    Ok(s.trim_end_matches('/').to_owned())
}

/// `10`, `10s`, `1.5s`, `500ms`, `2m` → a duration (a bare number is seconds).
///
/// # Errors
/// Empty, negative, not a number, an unknown unit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 10s, 500ms or 2m"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1000.0,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs > 86_400.0 * 7.0 {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A whole number ≥ 1.
///
/// # Errors
/// Not a number, or 0.
pub fn parse_positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// A send rate in messages per second: a positive number (`0.5` is one message every two seconds).
///
/// # Errors
/// Not a number, ≤ 0, or above 10 million.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of messages per second"))?;
    if !v.is_finite() || v <= 0.0 || v > 10_000_000.0 {
        return Err(format!(
            "{s:?}: the rate must be above 0 and at most 10000000"
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(args: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("chat-bench").chain(args.split_whitespace()))
    }

    fn err(args: &str) -> String {
        match parse(args) {
            Ok(c) => match c.plan() {
                Ok(p) => panic!("accepted: {p:?}"),
                Err(e) => e,
            },
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn fanout_flags() {
        let c = parse(
            "--url http://127.0.0.1:3000,ws://localhost:3001 --api http://127.0.0.1:8080/ \
             --source-ips 4 --duration 3s --ramp-up 500ms --json out.json --svg l.svg --watch-pid 12,13 \
             fanout --members 100 --senders 5 --rate 250",
        )
        .expect("parses");
        assert_eq!(c.urls.len(), 2);
        assert_eq!(
            c.urls[1].ws_url,
            "ws://localhost:3001/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(c.api.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(c.source_ips, 4);
        assert_eq!(c.duration, Duration::from_secs(3));
        assert_eq!(c.ramp_up, Duration::from_millis(500));
        assert_eq!(c.watch_pids, vec![12, 13]);
        assert_eq!(c.svg.as_deref(), Some(std::path::Path::new("l.svg")));
        let p = c.plan().expect("valid");
        assert_eq!(
            (p.name, p.connections, p.rooms, p.members),
            ("fanout", 100, 1, 100)
        );
        assert_eq!((p.senders, p.rate, p.users), (5, 250.0, 100));
    }

    #[test]
    fn rooms_and_idle_plans() {
        let p = parse("--url http://h:1 --users-from-seed mysql://u:p@h/db --users 7 rooms --rooms 3 --members 4 --senders 5")
            .expect("parses")
            .plan()
            .expect("valid");
        assert_eq!(
            (p.connections, p.rooms, p.members, p.senders, p.users),
            (12, 3, 4, 5, 7)
        );
        assert_eq!(p.rate, 10.0);
        // senders spread over the rooms first: room 0 member 0, room 1 member 0, room 2 member 0, room 0 member 1…
        let conns: Vec<usize> = (0..5).map(|k| p.sender_conn(k)).collect();
        assert_eq!(conns, vec![0, 4, 8, 1, 5]);
        assert_eq!(
            conns.iter().map(|c| p.room_of(*c)).collect::<Vec<_>>(),
            vec![Some(0), Some(1), Some(2), Some(0), Some(1)]
        );
        let p = parse("--url http://h:1 --api http://h:2 idle -n 50")
            .expect("parses")
            .plan()
            .expect("valid");
        assert_eq!(
            (p.connections, p.rooms, p.senders, p.room_of(3)),
            (50, 0, 0, None)
        );
    }

    #[test]
    fn several_processes_share_a_start() {
        let c = parse("--url http://h:1 --api http://h:2 --ready-file /tmp/r.1 --start-file /tmp/go idle -n 5")
            .expect("parses");
        assert_eq!(c.ready_file.as_deref(), Some(Path::new("/tmp/r.1")));
        assert_eq!(c.start_file.as_deref(), Some(Path::new("/tmp/go")));
        let c = parse("--url http://h:1 --api http://h:2 idle -n 5").expect("parses");
        assert_eq!((c.ready_file, c.start_file), (None, None));
    }

    #[test]
    fn bad_values_are_rejected_with_clear_errors() {
        let cases = [
            ("--api http://h:2 idle -n 5", "--url"),
            ("--url http://h:1 idle -n 5", "--api"),
            (
                "--url http://h:1 --api http://h:2 --users-from-seed mysql://x/y idle -n 5",
                "cannot be used with",
            ),
            (
                "--url https://h:1 --api http://h:2 idle -n 5",
                "TLS is not supported",
            ),
            (
                "--url ftp://h:1 --api http://h:2 idle -n 5",
                "unsupported scheme",
            ),
            ("--url http://h:x --api http://h:2 idle -n 5", "bad port"),
            (
                "--url http://h:1 --api h:2 idle -n 5",
                "expected http://host:port",
            ),
            ("--url http://h:1 --api http://h:2 idle -n 0", "at least 1"),
            (
                "--url http://h:1 --api http://h:2 idle -n many",
                "not a whole number",
            ),
            (
                "--url http://h:1 --api http://h:2 --duration 3x idle -n 5",
                "unknown unit",
            ),
            (
                "--url http://h:1 --api http://h:2 --duration soon idle -n 5",
                "expected a duration",
            ),
            (
                "--url http://h:1 --api http://h:2 --duration 0 idle -n 5",
                "--duration must be more than 0",
            ),
            (
                "--url http://h:1 --api http://h:2 --source-ips 0 idle -n 5",
                "source-ips",
            ),
            (
                "--url http://h:1 --api http://h:2 fanout --members 5 --rate 0",
                "rate must be above 0",
            ),
            (
                "--url http://h:1 --api http://h:2 fanout --members 5 --rate=-3",
                "rate must be above 0",
            ),
            (
                "--url http://h:1 --api http://h:2 fanout --members 5 --senders 6",
                "--senders 6 is more than the 5 connections",
            ),
            (
                "--url http://h:1 --api http://h:2 rooms --rooms 2",
                "--members",
            ),
            (
                "--url http://h:1 --users-from-seed postgres://x/y idle -n 5",
                "mysql://",
            ),
            (
                "--url http://h:1 --api http://h:2 fanout --members 5 --payload 5000",
                "payload",
            ),
            (
                "--url http://h:1 --api http://h:2 storm",
                "unrecognized subcommand",
            ),
            (
                "--url http://h:1 --api http://h:2 --verify-persisted x idle -n 3",
                "mysql://",
            ),
            (
                "--url http://h:1 --api http://h:2 --verify-persisted mysql://a/b idle -n 3",
                "needs a scenario that sends",
            ),
        ];
        for (args, want) in cases {
            let e = err(args);
            assert!(e.contains(want), "{args}: {e:?} should mention {want:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1e400").is_err());
    }

    #[test]
    fn gateway_urls() {
        let g = parse_gateway_url("http://10.0.0.1:3000/chat/socket.io/").expect("ok");
        assert_eq!(
            g.ws_url,
            "ws://10.0.0.1:3000/chat/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!((g.host.as_str(), g.port), ("10.0.0.1", 3000));
        let g = parse_gateway_url("ws://[::1]:3001").expect("ok");
        assert_eq!((g.host.as_str(), g.port), ("::1", 3001));
        assert_eq!(
            g.ws_url,
            "ws://[::1]:3001/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            parse_gateway_url("http://example.test").expect("ok").port,
            80
        );
        assert!(parse_gateway_url("http://:3000").is_err());
    }
}
