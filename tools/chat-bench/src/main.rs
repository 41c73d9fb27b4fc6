//! `chat-bench`: a load tool for the chat gateway. See `tools/chat-bench/README.md`.

mod cli;
mod client;
mod frames;
mod persist;
mod report;
mod stats;
mod svg;
mod users;

use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{CommandFactory, Parser};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::cli::{Cli, Plan};
use crate::client::{Shared, Target};
use crate::stats::{Counters, Sharded};

/// Queued sends per sender connection before the scheduler counts them as `CLIENT_BACKLOG`.
const SEND_QUEUE: usize = 1024;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let plan = match cli.plan() {
        Ok(p) => p,
        Err(e) => Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, e)
            .exit(),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli, plan)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Phase messages on stderr unless --quiet.
struct Say {
    quiet: bool,
}

impl Say {
    fn line(&self, msg: &str) {
        if !self.quiet {
            // Over the progress line, if one is drawn.
            let clear = if std::io::stderr().is_terminal() {
                "\r\x1b[2K"
            } else {
                ""
            };
            eprintln!("{clear}chat-bench: {msg}");
        }
    }
}

async fn run(cli: Cli, plan: Plan) -> anyhow::Result<()> {
    let say = Say { quiet: cli.quiet };
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let started_at = chrono::Utc::now();

    // Users and rooms.
    let t0 = Instant::now();
    let (bench_users, rooms) = if let Some(db) = &cli.users_from_seed {
        say.line(&format!(
            "minting {} users and {} rooms in the database…",
            plan.users, plan.rooms
        ));
        let members: Vec<(usize, usize)> = (0..plan.connections)
            .filter_map(|i| plan.room_of(i).map(|r| (r, i)))
            .collect();
        users::seed(
            db,
            &cli.jwt_secret,
            &run_id,
            plan.users,
            plan.rooms,
            &members,
        )
        .await?
    } else {
        let api = cli
            .api
            .as_deref()
            .context("--api or --users-from-seed is needed")?;
        say.line(&format!("registering {} users through {api}…", plan.users));
        let u = users::register(api, &run_id, plan.users, 8).await?;
        let r = users::create_rooms(api, &run_id, &u, plan.rooms).await?;
        (u, r)
    };
    say.line(&format!(
        "users ready in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));

    // Targets.
    let mut addrs = Vec::new();
    for g in &cli.urls {
        let a = tokio::net::lookup_host((g.host.as_str(), g.port))
            .await
            .with_context(|| format!("resolving {}", g.host))?
            .next()
            .with_context(|| format!("{} has no address", g.host))?;
        addrs.push(a);
    }

    let shared = Arc::new(Shared {
        origin: Instant::now(),
        counters: Counters::default(),
        latency: Sharded::new(64),
        ack_latency: Sharded::new(16),
        window: (AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)),
        payload: plan.payload,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sender_txs = Vec::with_capacity(plan.senders);
    let mut sender_rxs: Vec<Option<mpsc::Receiver<u64>>> =
        (0..plan.connections).map(|_| None).collect();
    for k in 0..plan.senders {
        let (tx, rx) = mpsc::channel(SEND_QUEUE);
        sender_txs.push(tx);
        sender_rxs[plan.sender_conn(k)] = Some(rx);
    }

    // Connections: each task opens its own (a semaphore bounds the ones opening at once), then runs.
    say.line(&format!(
        "opening {} connections over {} gateway(s), {} source address(es)…",
        plan.connections,
        addrs.len(),
        cli.source_ips
    ));
    let rss_before: Vec<Option<u64>> = cli.watch_pids.iter().map(|p| stats::rss_kib(*p)).collect();
    let progress = Progress::start(&cli, &plan, shared.clone());
    let gate = Arc::new(Semaphore::new(cli.connect_concurrency));
    let mut tasks = Vec::with_capacity(plan.connections);
    let t_conn = Instant::now();
    for (i, rx) in sender_rxs.into_iter().enumerate() {
        let addr = addrs[i % addrs.len()];
        let room = plan.room_of(i).map(|r| rooms[r].to_string());
        let target = Target {
            index: i,
            addr,
            source: client::source_for(i / addrs.len(), cli.source_ips, &addr),
            ws_url: cli.urls[i % addrs.len()].ws_url.clone(),
            token: bench_users[i % bench_users.len()].token.clone(),
            room: room.clone(),
        };
        let (gate, shared, stop) = (gate.clone(), shared.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            let opened = {
                let Ok(_permit) = gate.acquire().await else {
                    return;
                };
                tokio::time::timeout(Duration::from_secs(30), client::open(&target)).await
            };
            match opened {
                Ok(Ok(ws)) => {
                    shared.counters.conns_ok.fetch_add(1, Relaxed);
                    client::run(ws, target.index, room, rx, shared, stop).await;
                }
                Ok(Err(code)) => {
                    shared.counters.conns_failed.fetch_add(1, Relaxed);
                    shared.counters.error(&code);
                }
                Err(_) => {
                    shared.counters.conns_failed.fetch_add(1, Relaxed);
                    shared.counters.error("CONNECT_TIMEOUT");
                }
            }
        }));
    }
    let total = plan.connections as u64;
    let deadline = Instant::now() + cli.connect_timeout;
    loop {
        let c = &shared.counters;
        if Counters::get(&c.conns_ok) + Counters::get(&c.conns_failed) >= total {
            break;
        }
        if Instant::now() >= deadline {
            say.line("connect timeout: going on with the connections that are open");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = t_conn.elapsed().as_secs_f64();
    say.line(&format!(
        "{} connected, {} failed in {connect_secs:.1} s",
        Counters::get(&shared.counters.conns_ok),
        Counters::get(&shared.counters.conns_failed)
    ));

    // Several processes: say this one is connected, then wait for the word to start.
    if let Some(path) = &cli.ready_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &cli.start_file {
        let until = Instant::now() + cli.connect_timeout;
        while !path.exists() {
            if Instant::now() >= until {
                anyhow::bail!("{} did not appear within --connect-timeout", path.display());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // Ramp-up, then the measured window.
    let ramp = cli.ramp_up.as_secs_f64();
    let begin = Instant::now();
    let window_start = shared.now_ns() + u64::try_from(cli.ramp_up.as_nanos()).unwrap_or(u64::MAX);
    let window_end = window_start + u64::try_from(cli.duration.as_nanos()).unwrap_or(u64::MAX);
    shared.set_window(window_start, window_end);
    let total_secs = ramp + cli.duration.as_secs_f64();
    let pids = cli.watch_pids.clone();
    let mut cpu0: Option<Vec<f64>> = None;
    let mut self0 = 0.0;
    let mut d0 = 0;
    let mut issued: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let t = begin.elapsed().as_secs_f64();
        if cpu0.is_none() && t >= ramp {
            cpu0 = Some(
                pids.iter()
                    .map(|p| stats::cpu_secs(*p).unwrap_or(0.0))
                    .collect(),
            );
            self0 = stats::cpu_secs(std::process::id()).unwrap_or(0.0);
            d0 = Counters::get(&shared.counters.deliveries);
        }
        if t >= total_secs {
            break;
        }
        if sender_txs.is_empty() {
            continue;
        }
        let want = stats::target_sends(plan.rate, ramp, t);
        while issued < want {
            let k = usize::try_from(issued).unwrap_or(0) % sender_txs.len();
            match sender_txs[k].try_send(shared.now_ns()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => shared.counters.error("CLIENT_BACKLOG"),
                Err(mpsc::error::TrySendError::Closed(_)) => shared.counters.error("SENDER_DOWN"),
            }
            issued += 1;
        }
    }
    let last_send = Instant::now();
    let measured_secs = begin.elapsed().as_secs_f64() - ramp;
    let cpu1: Vec<f64> = pids
        .iter()
        .map(|p| stats::cpu_secs(*p).unwrap_or(0.0))
        .collect();
    let self1 = stats::cpu_secs(std::process::id()).unwrap_or(0.0);
    let rss: Vec<Option<u64>> = pids.iter().map(|p| stats::rss_kib(*p)).collect();
    let d1 = Counters::get(&shared.counters.deliveries);
    drop(sender_txs);
    tokio::time::sleep(cli.drain).await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    progress.finish().await;

    let persistence = match &cli.verify_persisted {
        Some(db) => {
            say.line("waiting for the acked messages to be stored…");
            let p = persist::verify(
                db,
                &rooms,
                Counters::get(&shared.counters.acked),
                begin,
                last_send,
                cli.persist_timeout,
            )
            .await?;
            if p.missing > 0 {
                shared.counters.error_n(
                    "NOT_PERSISTED",
                    usize::try_from(p.missing).unwrap_or(usize::MAX),
                );
            }
            Some(p)
        }
        None => None,
    };
    let cpu0 = cpu0.unwrap_or_else(|| cpu1.clone());
    let summary = report::Summary::build(report::Inputs {
        plan: &plan,
        cli: &cli,
        started_at,
        connect_secs,
        measured_secs,
        shared: &shared,
        deliveries_during_window: d1.saturating_sub(d0),
        watched: pids
            .iter()
            .zip(cpu0.iter().zip(cpu1.iter()))
            .zip(rss.into_iter().zip(rss_before))
            .map(|((pid, (a, b)), (rss, rss0))| (*pid, b - a, rss, rss0))
            .collect(),
        self_cpu: self1 - self0,
        persistence,
    });
    print!("{}", summary.table());
    if let Some(path) = &cli.svg {
        let title = format!(
            "chat-bench {}: {} connections, {} sender(s) at {}/s",
            plan.name, plan.connections, plan.senders, plan.rate
        );
        let (lat, ack) = (shared.latency.merged(), shared.ack_latency.merged());
        let doc = svg::render(
            &title,
            &[
                svg::Series {
                    name: "send → receive_message",
                    hist: &lat,
                },
                svg::Series {
                    name: "send → ack",
                    hist: &ack,
                },
            ],
        );
        std::fs::write(path, doc).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A one-line ticker on stderr (TTY only, not with --quiet).
struct Progress {
    stop: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Progress {
    fn start(cli: &Cli, plan: &Plan, shared: Arc<Shared>) -> Self {
        if cli.quiet || !std::io::stderr().is_terminal() {
            return Self { stop: None };
        }
        let (tx, mut rx) = watch::channel(false);
        let total = plan.connections;
        let task = tokio::spawn(async move {
            let mut last = 0;
            let mut t = tokio::time::interval(Duration::from_secs(1));
            let start = Instant::now();
            loop {
                tokio::select! {
                    _ = rx.changed() => break,
                    _ = t.tick() => {}
                }
                let c = &shared.counters;
                let d = Counters::get(&c.deliveries);
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2K{:>4} s | conns {}/{total} failed {} | sent {} acked {} refused {} | deliveries {} ({}/s)",
                    start.elapsed().as_secs(),
                    Counters::get(&c.conns_ok),
                    Counters::get(&c.conns_failed),
                    Counters::get(&c.sent),
                    Counters::get(&c.acked),
                    Counters::get(&c.refused),
                    d,
                    d - last,
                );
                let _ = err.flush();
                last = d;
            }
            eprintln!();
        });
        Self {
            stop: Some((tx, task)),
        }
    }

    async fn finish(self) {
        if let Some((stop, task)) = self.stop {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }
}
