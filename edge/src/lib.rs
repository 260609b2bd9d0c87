//! The Latchkey edge: answers client license calls from a signed snapshot
//! held in memory, with no network hop on the request path.
//!
//! `snapshots` loads and verifies the snapshot file and swaps a new one in
//! atomically (readers finish on the view they started with); `routes`
//! answers verify, info, version and heartbeat from it; `limits` rate-limits
//! per license key and per client IP; `answers` signs answers with a key
//! control certifies; `server` runs hyper with timeouts and graceful
//! shutdown. Architecture invariant: the edge holds only public
//! keys and never talks to PostgreSQL.

pub mod answers;
pub mod client_ip;
pub mod config;
pub mod error;
pub mod extract;
pub mod limits;
pub mod link;
pub mod observe;
pub mod routes;
pub mod server;
pub mod snapshots;
pub mod usage;

pub use config::EdgeConfig;
pub use server::{RunningEdge, serve, start};
