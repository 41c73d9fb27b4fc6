//! The persistence worker: drains every shard's Redis stream into MySQL in batches, exactly once.
//!
//! One consumer loop per shard ([`shard`]) reads the shard's stream in the `persist` consumer group,
//! batches up to `WORKER_BATCH_SIZE` entries or `WORKER_BATCH_MAX_WAIT_MS`, writes each batch in one
//! transaction with multi-row, idempotent statements ([`apply`], `chat_store::batch`) and only then
//! acknowledges it. Any number of replicas share a stream (unique consumer names); entries of a dead
//! replica are taken over after `WORKER_CLAIM_IDLE_MS`. A housekeeping task ([`housekeeping`]) samples
//! lag for the metrics and trims the streams below what every group has acknowledged. After each
//! acknowledged batch the rooms' persisted watermarks are raised ([`watermark`]), which lets the send
//! script trim the rooms' recent-message logs in Redis. See the README of this service for the failure
//! behaviour.

pub mod apply;
pub mod housekeeping;
pub mod http;
pub mod metrics;
pub mod shard;
mod startup;
pub mod streams;
pub mod watermark;

pub use metrics::Metrics;
pub use startup::Application;
