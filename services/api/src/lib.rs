//! The REST API service: auth, users, rooms, members and history over MySQL, with Redis for rate limits
//! and token revocation. A library with a thin `main`, so tests start the real service on port 0.

pub mod http;
pub mod metrics;
pub mod startup;
pub mod state;

pub use startup::Application;
