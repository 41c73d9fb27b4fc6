//! Fan-out benchmark: one room of `BENCH_MEMBERS` members split over two gateway processes (through
//! Redis), `BENCH_SENDERS` of them sending at each rate of `BENCH_RATES` (messages per second, all
//! senders together) for `BENCH_SECS` seconds. Reports deliveries per second, publish → receive
//! latency (p50/p99/max, measured by the receiving client against the send time written into the
//! message) and the gateways' CPU-seconds per million deliveries (from /proc, both processes).
//!
//! ```sh
//! cargo build --release -p chat-gateway --bin chat-gateway --example fanout_bench
//! target/release/examples/fanout_bench            # BENCH_MEMBERS=1000 BENCH_RATES=50,100,200,400
//! ```
//!
//! Needs MariaDB and Redis as the tests do (a fresh database and key prefix, dropped afterwards). The
//! gateways run with the message rate limit raised (`MESSAGE_RATE_LIMIT=1000000`); no worker runs, so
//! the stream just grows for the run. The clients are raw Engine.IO/Socket.IO over tokio-tungstenite
//! in this process, which shares the machine's cores with the gateways and Redis: on a 2-core machine
//! the client side is a large part of the load, so latency figures are an upper bound.

use anyhow::Context;
use chat_auth::TokenKeys;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message as Ws;
use uuid::Uuid;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ns(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Shared {
    origin: Instant,
    /// Current phase (index into the rates), or u64::MAX between phases.
    phase: AtomicU64,
    deliveries: AtomicU64,
    latencies: Mutex<Vec<Vec<u32>>>,
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects, authenticates, joins the room; returns the socket ready to read events.
async fn connect(port: u16, token: &str, room: Uuid) -> anyhow::Result<WsStream> {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    ws.send(Ws::text(format!(r#"40{{"token":"{token}"}}"#)))
        .await?;
    ws.send(Ws::text(format!(
        r#"420["join_room",{{"roomId":"{room}"}}]"#
    )))
    .await?;
    loop {
        match ws.next().await.context("closed while joining")?? {
            Ws::Text(t) if t.starts_with("430") => {
                anyhow::ensure!(t.contains(r#""ok":true"#), "join refused: {t}");
                return Ok(ws);
            }
            Ws::Text(t) if t.as_str() == "2" => ws.send(Ws::text("3")).await?,
            Ws::Text(t) if t.starts_with("44") => anyhow::bail!("connect refused: {t}"),
            _ => {}
        }
    }
}

/// Reads events until the end of the run, recording latencies of `receive_message`.
async fn receive(
    mut ws: WsStream,
    shared: Arc<Shared>,
    mut done: tokio::sync::watch::Receiver<bool>,
) {
    let mut local: Vec<Vec<u32>> = Vec::new();
    loop {
        tokio::select! {
            _ = done.changed() => break,
            frame = ws.next() => {
                let Some(Ok(frame)) = frame else { break };
                let Ws::Text(t) = frame else { continue };
                if t.as_str() == "2" {
                    let _ = ws.send(Ws::text("3")).await;
                    continue;
                }
                if !t.starts_with("42[\"receive_message\"") {
                    continue;
                }
                // content is "t<ns>:<phase>"
                let Some(i) = t.find("\"content\":\"t") else { continue };
                let rest = &t[i + 12..];
                let Some(end) = rest.find('"') else { continue };
                let mut parts = rest[..end].split(':');
                let sent: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                let phase: usize = parts.next().and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
                if phase as u64 != shared.phase.load(Relaxed) {
                    continue;
                }
                let lat = now_ns(shared.origin).saturating_sub(sent) / 1000;
                shared.deliveries.fetch_add(1, Relaxed);
                if local.len() <= phase {
                    local.resize(phase + 1, Vec::new());
                }
                local[phase].push(u32::try_from(lat).unwrap_or(u32::MAX));
            }
        }
    }
    let mut all = shared
        .latencies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (p, v) in local.into_iter().enumerate() {
        if all.len() <= p {
            all.resize(p + 1, Vec::new());
        }
        all[p].extend(v);
    }
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let members = usize::try_from(env_num("BENCH_MEMBERS", 1000)).unwrap_or(1000);
    let senders = usize::try_from(env_num("BENCH_SENDERS", 10))
        .unwrap_or(10)
        .min(members);
    let secs = env_num("BENCH_SECS", 10);
    let rates: Vec<u64> = std::env::var("BENCH_RATES")
        .unwrap_or_else(|_| "50,100,200,400".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();

    let env = chat_testkit::TestEnv::new().await?;
    let store = env.store().await?;
    eprintln!("seeding {members} members…");
    let seeded = chat_testkit::seed_users_and_rooms(&store, members, 1, true).await?;
    let room = seeded.rooms[0];

    let bin = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("chat-gateway"))
        .context("locating chat-gateway")?;
    let ports = [free_port()?, free_port()?];
    let mut gateways: Vec<Child> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let mut cmd = Command::new(&bin);
        cmd.envs(env.vars())
            .env("GATEWAY_PORT", port.to_string())
            .env("GATEWAY_ID", format!("bench{i}"))
            .env("MESSAGE_RATE_LIMIT", "1000000")
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        gateways.push(
            cmd.spawn()
                .with_context(|| format!("starting {}", bin.display()))?,
        );
    }
    for port in ports {
        let url = format!("http://127.0.0.1:{port}/ready");
        let mut ok = false;
        for _ in 0..100 {
            if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                drop(s);
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(ok, "gateway did not start: {url}");
    }
    let pids: Vec<u32> = gateways.iter().filter_map(Child::id).collect();

    let keys = TokenKeys::new(
        chat_config::DEV_JWT_SECRET.as_bytes(),
        Duration::from_secs(3600),
    );
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        phase: AtomicU64::new(u64::MAX),
        deliveries: AtomicU64::new(0),
        latencies: Mutex::new(Vec::new()),
    });
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    eprintln!("connecting {members} clients over two gateways…");
    let mut sender_sockets = Vec::new();
    let mut readers = Vec::new();
    let t0 = Instant::now();
    for (i, user) in seeded.users.iter().enumerate() {
        let (token, _) = keys.issue(*user, chrono::Utc::now())?;
        let ws = connect(ports[i % 2], &token, room).await?;
        if i < senders {
            // Senders get a second connection to write on; this one reads like everyone else's.
            let (tok2, _) = keys.issue(*user, chrono::Utc::now())?;
            sender_sockets.push(connect(ports[(i + 1) % 2], &tok2, room).await?);
        }
        readers.push(tokio::spawn(receive(ws, shared.clone(), done_rx.clone())));
    }
    eprintln!("connected in {:.1} s", t0.elapsed().as_secs_f64());
    // Sender connections must keep answering pings and draining their own copies.
    let mut writers = Vec::new();
    for ws in sender_sockets {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let (mut sink, mut stream) = ws.split();
        let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        tokio::spawn(async move {
            while let Some(Ok(f)) = stream.next().await {
                if matches!(&f, Ws::Text(t) if t.as_str() == "2") {
                    let _ = pong_tx.send(());
                }
            }
        });
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = rx.recv() => match m { Some(m) => { if sink.send(Ws::text(m)).await.is_err() { break } } None => break },
                    p = pong_rx.recv() => match p { Some(()) => { let _ = sink.send(Ws::text("3")).await; } None => break },
                }
            }
        });
        writers.push(tx);
    }

    println!(
        "| msgs/s sent | deliveries/s | p50 ms | p99 ms | max ms | gateways CPU-s | CPU-s per 1M deliveries | bench client CPU-s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let self_pid = std::process::id();
    let mut results = Vec::new();
    for (phase, rate) in rates.iter().enumerate() {
        let interval = Duration::from_secs_f64(1.0 / (*rate).max(1) as f64);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        // One second of warm-up (not counted), then the measured window.
        let warm_until = Instant::now() + Duration::from_secs(1);
        let end = warm_until + Duration::from_secs(secs);
        let mut measuring = false;
        let (mut cpu0, mut me0, mut d0, mut t_start) = (0.0, 0.0, 0, Instant::now());
        let mut n = 0usize;
        loop {
            tick.tick().await;
            let now = Instant::now();
            if !measuring && now >= warm_until {
                measuring = true;
                shared.phase.store(phase as u64, Relaxed);
                cpu0 = pids.iter().map(|p| cpu_secs(*p)).sum::<f64>();
                me0 = cpu_secs(self_pid);
                d0 = shared.deliveries.load(Relaxed);
                t_start = now;
            }
            if now >= end {
                break;
            }
            let tag = if measuring { phase } else { usize::MAX - 1 };
            let msg = format!(
                r#"42["send_message",{{"roomId":"{room}","content":"t{}:{tag}"}}]"#,
                now_ns(shared.origin)
            );
            let _ = writers[n % writers.len()].send(msg);
            n += 1;
        }
        shared.phase.store(u64::MAX, Relaxed);
        // Let in-flight deliveries land before reading the counters.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let elapsed = t_start.elapsed().as_secs_f64() - 0.3;
        let cpu = pids.iter().map(|p| cpu_secs(*p)).sum::<f64>() - cpu0;
        let me = cpu_secs(self_pid) - me0;
        let delivered = shared.deliveries.load(Relaxed) - d0;
        results.push((*rate, delivered, elapsed, cpu, me));
    }
    let _ = done_tx.send(true);
    for r in readers {
        let _ = r.await;
    }
    let lat = shared
        .latencies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for (phase, (rate, delivered, elapsed, cpu, me)) in results.iter().enumerate() {
        let mut l = lat.get(phase).cloned().unwrap_or_default();
        l.sort_unstable();
        #[allow(clippy::cast_precision_loss)]
        let per_s = *delivered as f64 / elapsed;
        #[allow(clippy::cast_precision_loss)]
        let per_m = if *delivered > 0 {
            cpu / (*delivered as f64 / 1e6)
        } else {
            0.0
        };
        println!(
            "| {rate} | {per_s:.0} | {:.2} | {:.2} | {:.2} | {cpu:.2} | {per_m:.3} | {me:.2} |",
            pct(&l, 0.5),
            pct(&l, 0.99),
            pct(&l, 1.0),
        );
    }
    for mut g in gateways {
        let _ = g.kill().await;
    }
    Ok(())
}
