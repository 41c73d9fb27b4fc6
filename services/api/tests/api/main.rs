//! Integration tests of the API over real HTTP, against a real MariaDB and Redis (one fresh database and
//! Redis prefix per test). One test binary, so the suite links once.
#![allow(clippy::unwrap_used)]

mod auth;
mod bad_input;
mod helpers;
mod history;
mod messages_write;
mod metrics;
mod rooms;
mod web;
