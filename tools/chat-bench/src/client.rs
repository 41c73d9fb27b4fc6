//! One bench connection: open (from a chosen loopback source address), authenticate, join its room,
//! then read until told to stop, answering pings, recording deliveries and acks, and sending the
//! messages the scheduler hands it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::WebSocketStream;

use crate::frames::{self, Incoming};
use crate::stats::{Counters, Sharded};

type Stream = WebSocketStream<TcpStream>;

/// What every connection task shares.
pub struct Shared {
    pub origin: Instant,
    pub counters: Counters,
    /// Delivery latency (send → read), messages sent in the measured window only.
    pub latency: Sharded,
    /// Ack latency (send → ack), measured window only.
    pub ack_latency: Sharded,
    /// The measured window in ns since `origin`, start and end; deliveries of messages sent in it are
    /// counted. Atomics, not a lock: every delivery reads them.
    pub window: (AtomicU64, AtomicU64),
    pub payload: usize,
}

impl Shared {
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn set_window(&self, start_ns: u64, end_ns: u64) {
        self.window.1.store(end_ns, Relaxed);
        self.window.0.store(start_ns, Relaxed);
    }

    fn in_window(&self, sent_ns: u64) -> bool {
        sent_ns >= self.window.0.load(Relaxed) && sent_ns < self.window.1.load(Relaxed)
    }
}

/// Where and as whom a connection connects.
pub struct Target {
    pub index: usize,
    pub addr: SocketAddr,
    pub source: Option<Ipv4Addr>,
    pub ws_url: String,
    pub token: String,
    pub room: Option<String>,
}

/// The source address of connection `i` when spreading over `n` loopback addresses (`None` for one
/// address, or for a target that is not IPv4 loopback).
pub fn source_for(i: usize, n: u8, target: &SocketAddr) -> Option<Ipv4Addr> {
    let IpAddr::V4(ip) = target.ip() else {
        return None;
    };
    if n <= 1 || !ip.is_loopback() {
        return None;
    }
    let k = u8::try_from(i % usize::from(n)).unwrap_or(0);
    Some(Ipv4Addr::new(127, 0, 0, 1 + k))
}

/// Opens the connection and joins the room; the error is a short code for the summary.
pub async fn open(t: &Target) -> Result<Stream, String> {
    let sock = if t.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| io_code("socket", &e))?;
    if let Some(src) = t.source {
        sock.bind(SocketAddr::new(IpAddr::V4(src), 0))
            .map_err(|e| io_code("bind", &e))?;
    }
    let tcp = sock
        .connect(t.addr)
        .await
        .map_err(|e| io_code("connect", &e))?;
    let _ = tcp.set_nodelay(true);
    let (mut ws, _) = tokio_tungstenite::client_async(t.ws_url.as_str(), tcp)
        .await
        .map_err(|e| format!("WS_HANDSHAKE: {e}"))?;
    send(&mut ws, frames::connect(&t.token)).await?;
    let mut joined = t.room.is_none();
    let mut connected = false;
    loop {
        let frame = match ws.next().await {
            Some(Ok(Ws::Text(f))) => f,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("WS_ERROR: {e}")),
            None => return Err("CLOSED_WHILE_CONNECTING".into()),
        };
        match frames::classify(frame.as_str()) {
            Incoming::Ping => send(&mut ws, frames::PONG.into()).await?,
            Incoming::Connected => {
                connected = true;
                if let Some(room) = &t.room {
                    let f = frames::join_room(room, 0).map_err(|e| e.to_string())?;
                    send(&mut ws, f).await?;
                }
            }
            Incoming::ConnectError(code) => return Err(format!("CONNECT_ERROR: {code}")),
            Incoming::Ack { id: 0, result } => {
                result.map_err(|code| format!("JOIN_REFUSED: {code}"))?;
                joined = true;
            }
            Incoming::Close => return Err("CLOSED_WHILE_CONNECTING".into()),
            _ => {}
        }
        if connected && joined {
            return Ok(ws);
        }
    }
}

fn io_code(what: &str, e: &std::io::Error) -> String {
    format!("{what}: {}", e.kind())
}

async fn send(ws: &mut Stream, text: String) -> Result<(), String> {
    ws.send(Ws::text(text))
        .await
        .map_err(|e| format!("WS_WRITE: {e}"))
}

/// Reads (and sends, when it has a queue of send times) until `stop` turns true or the server goes away.
pub async fn run(
    mut ws: Stream,
    index: usize,
    room: Option<String>,
    mut sends: Option<mpsc::Receiver<u64>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let c = &shared.counters;
    let mut pending: HashMap<u64, u64> = HashMap::new();
    let mut next_id: u64 = 1;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            sent = async { match sends.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                let (Some(sent_ns), Some(room)) = (sent, room.as_deref()) else { sends = None; continue };
                let Ok(f) = frames::send_message(room, sent_ns, shared.payload, next_id) else { continue };
                pending.insert(next_id, sent_ns);
                next_id += 1;
                if ws.send(Ws::text(f)).await.is_err() {
                    c.error("DISCONNECTED");
                    break;
                }
                c.sent.fetch_add(1, Relaxed);
            }
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Ws::Text(t))) => t,
                    Some(Ok(Ws::Close(_))) | None | Some(Err(_)) => {
                        c.error("DISCONNECTED");
                        break;
                    }
                    Some(Ok(_)) => continue,
                };
                match frames::classify(text.as_str()) {
                    Incoming::Delivery { sent_ns } => {
                        c.deliveries.fetch_add(1, Relaxed);
                        if let Some(s) = sent_ns {
                            if shared.in_window(s) {
                                c.deliveries_measured.fetch_add(1, Relaxed);
                                shared.latency.record(index, shared.now_ns().saturating_sub(s) / 1000);
                            }
                        }
                    }
                    Incoming::Ping if ws.send(Ws::text(frames::PONG)).await.is_err() => {
                        c.error("DISCONNECTED");
                        break;
                    }
                    Incoming::Ack { id, result } => {
                        let Some(s) = pending.remove(&id) else { continue };
                        match result {
                            Ok(()) => {
                                c.acked.fetch_add(1, Relaxed);
                                if shared.in_window(s) {
                                    shared.ack_latency.record(index, shared.now_ns().saturating_sub(s) / 1000);
                                }
                            }
                            Err(code) => {
                                c.refused.fetch_add(1, Relaxed);
                                c.error(&code);
                            }
                        }
                    }
                    Incoming::ErrorEvent(code) => c.error(&format!("error event: {code}")),
                    Incoming::Close => {
                        c.error("DISCONNECTED");
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
    if !pending.is_empty() {
        c.error_n("NO_ACK", pending.len());
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_cycle_over_loopback_only() {
        let lo: SocketAddr = "127.0.0.1:3000".parse().expect("addr");
        let srcs: Vec<_> = (0..5).map(|i| source_for(i, 3, &lo)).collect();
        assert_eq!(
            srcs,
            vec![
                Some(Ipv4Addr::new(127, 0, 0, 1)),
                Some(Ipv4Addr::new(127, 0, 0, 2)),
                Some(Ipv4Addr::new(127, 0, 0, 3)),
                Some(Ipv4Addr::new(127, 0, 0, 1)),
                Some(Ipv4Addr::new(127, 0, 0, 2)),
            ]
        );
        assert_eq!(source_for(1, 1, &lo), None);
        let remote: SocketAddr = "192.0.2.1:3000".parse().expect("addr");
        assert_eq!(source_for(1, 3, &remote), None);
        let v6: SocketAddr = "[::1]:3000".parse().expect("addr");
        assert_eq!(source_for(1, 3, &v6), None);
    }
}
