//! Load generator for `docs/BENCHMARKS.md`: many idle Socket.IO WebSocket clients against
//! `bench_server`, measuring the server's RSS per connection, heartbeat CPU and fan-out cost.
//!
//! ```text
//! bench_clients <port> <server-pid> <stages, e.g. 1000,5000,10000,15000> <fanout-at> <idle-secs>
//! ```
//! Clients connect from 127.0.0.2..=127.0.0.201 (so no source-port exhaustion), complete the
//! Engine.IO handshake, CONNECT with `{token}`, emit `join`, then only answer pings.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

struct Shared {
    ready: AtomicUsize,
    ticks: AtomicUsize,
    tick_notify: Notify,
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server alive");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// (utime, stime) of the process, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("server alive");
    let after = &s[s.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    (
        f[11].parse::<u64>().unwrap_or(0),
        f[12].parse::<u64>().unwrap_or(0),
    )
}

async fn client(
    i: usize,
    port: u16,
    shared: Arc<Shared>,
    mut control: Option<mpsc::Receiver<(u64, mpsc::Sender<String>)>>,
) {
    let ip = Ipv4Addr::new(
        127,
        0,
        (2 + (i / 250) / 250) as u8,
        (2 + (i / 250) % 250) as u8,
    );
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(IpAddr::V4(ip), 0)).expect("bind");
    let stream = sock
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect");
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let cfg = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(cfg))
        .await
        .expect("upgrade");
    let _open = ws.next().await;
    ws.send(Message::text(format!(r#"40{{"token":"user-{i}"}}"#)))
        .await
        .expect("send");
    let _reply = ws.next().await;
    ws.send(Message::text(r#"42["join",{"roomId":"bench"}]"#))
        .await
        .expect("send");
    shared.ready.fetch_add(1, Ordering::Release);
    let mut pending_ack: Option<mpsc::Sender<String>> = None;
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    if t.as_str() == "2" {
                        let _ = ws.send(Message::text("3")).await;
                    } else if t.as_str().starts_with(r#"42["tick""#) {
                        if shared.ticks.fetch_add(1, Ordering::AcqRel) + 1 >= shared.ready.load(Ordering::Acquire) {
                            shared.tick_notify.notify_one();
                        }
                    } else if t.as_str().starts_with("43") {
                        if let Some(tx) = pending_ack.take() {
                            let _ = tx.send(t.to_string()).await;
                        }
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            c = async { match control.as_mut() { Some(c) => c.recv().await, None => std::future::pending().await } } => {
                let Some((seq, reply)) = c else { return };
                pending_ack = Some(reply);
                let _ = ws.send(Message::text(format!(r#"42{seq}["fanout",{seq}]"#))).await;
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args[1].parse().expect("port");
    let pid: u32 = args[2].parse().expect("server pid");
    let stages: Vec<usize> = args[3]
        .split(',')
        .map(|s| s.parse().expect("stage"))
        .collect();
    let fanout_at: usize = args[4].parse().expect("fanout-at");
    let idle_secs: u64 = args[5].parse().expect("idle secs");

    let shared = Arc::new(Shared {
        ready: AtomicUsize::new(0),
        ticks: AtomicUsize::new(0),
        tick_notify: Notify::new(),
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = rss_kib(pid);
    println!("baseline: server RSS {base} KiB");
    let mut rows = vec![(0usize, base)];
    let (ctl_tx, ctl_rx) = mpsc::channel(1);
    let mut ctl_rx = Some(ctl_rx);
    let mut opened = 0;
    for &stage in &stages {
        let sem = Arc::new(tokio::sync::Semaphore::new(200));
        while opened < stage {
            let permit = sem.clone().acquire_owned().await.expect("semaphore");
            let s = shared.clone();
            let ctl = if opened == 0 { ctl_rx.take() } else { None };
            let i = opened;
            tokio::spawn(async move {
                let ready_before = s.ready.load(Ordering::Acquire);
                let s2 = s.clone();
                let h = tokio::spawn(client(i, port, s2, ctl));
                // release the permit once this client is ready (or gone)
                while s.ready.load(Ordering::Acquire) <= ready_before && !h.is_finished() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                drop(permit);
                let _ = h.await;
            });
            opened += 1;
        }
        while shared.ready.load(Ordering::Acquire) < stage {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss = rss_kib(pid);
        let (prev_n, prev_rss) = *rows.last().expect("baseline");
        println!(
            "{stage:>6} connections: server RSS {rss} KiB; +{:.2} KiB/conn since {prev_n}; {:.2} KiB/conn over baseline",
            (rss as f64 - prev_rss as f64) / (stage - prev_n) as f64,
            (rss as f64 - base as f64) / stage as f64
        );
        rows.push((stage, rss));

        if stage == fanout_at {
            let mut enqueue = Vec::new();
            let mut delivered = Vec::new();
            for seq in 1..=30u64 {
                shared.ticks.store(0, Ordering::Release);
                let (tx, mut rx) = mpsc::channel(1);
                let start = Instant::now();
                ctl_tx.send((seq, tx)).await.expect("control");
                let ack = rx.recv().await.expect("ack");
                while shared.ticks.load(Ordering::Acquire) < stage {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(100),
                        shared.tick_notify.notified(),
                    )
                    .await;
                }
                delivered.push(start.elapsed());
                let ns: u64 = ack
                    [ack.find('[').expect("args") + 1..ack.find(',').expect("two args")]
                    .parse()
                    .expect("ns");
                enqueue.push(Duration::from_nanos(ns));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            enqueue.sort();
            delivered.sort();
            println!(
                "fan-out to {stage}: server send loop median {:?} (min {:?}, max {:?}); all {stage} clients received it: median {:?} (min {:?}, max {:?})",
                enqueue[15], enqueue[0], enqueue[29], delivered[15], delivered[0], delivered[29]
            );
        }
    }
    let n = *stages.last().expect("a stage");
    let t0 = cpu_ticks(pid);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let t1 = cpu_ticks(pid);
    let (user, sys) = (t1.0 - t0.0, t1.1 - t0.1);
    let ticks = user + sys;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "idle {n} connections for {secs:.0} s (heartbeats only): server CPU {:.2} s (user {:.2} s, sys {:.2} s) = {:.3}% of one core",
        ticks as f64 / 100.0,
        user as f64 / 100.0,
        sys as f64 / 100.0,
        ticks as f64 / 100.0 / secs * 100.0
    );
    let (n1, r1) = rows[1];
    let (nl, rl) = *rows.last().expect("rows");
    println!(
        "RSS slope {n1}..{nl}: {:.2} KiB per connection",
        (rl as f64 - r1 as f64) / (nl - n1) as f64
    );
}
