//! The WebSocket gateway: stateless Socket.IO servers behind a load balancer, fanning room events out
//! over Redis.
//!
//! * [`handler`]: authentication at CONNECT and the client events of the wire contract.
//! * [`fanout`]: the room registry (encode once, write to every local socket).
//! * [`subscriber`]: the pub/sub connection (sharded on a cluster), re-subscription and gap refill.
//! * [`presence`]: per-connection presence entries with expiring heartbeats; cleanup after dead gateways.
//! * [`typing`]: throttled, expiring typing indicators.
//! * [`recovery`]: Socket.IO sessions in Redis, so recovery works across gateways.
//!
//! The send path itself (rate limit, dedupe, `seq`, stream, logs, publish in one script) lives in
//! `chat-realtime`, shared with the API's REST send.

pub mod fanout;
pub mod handler;
pub mod http;
pub mod members;
pub mod metrics;
pub mod presence;
pub mod recheck;
pub mod recovery;
mod startup;
pub mod state;
pub mod subscriber;
pub mod typing;

pub use startup::Application;
