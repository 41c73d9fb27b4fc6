//! The persistence worker against real Redis and real MariaDB.
#![allow(clippy::unwrap_used)]

mod failures;
mod flow;
mod helpers;
mod semantics;
mod watermark;
