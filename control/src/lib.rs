//! Latchkey's control plane: the source of truth (PostgreSQL), the admin
//! panel and API, the snapshot publisher and the QUIC link edges connect to.
//! `app` puts the parts together; `cli` is what the binary runs.

pub mod app;
pub mod backup;
pub mod cli;
pub mod config;
pub mod context;
pub mod db;
pub mod demo;
pub mod error;
pub mod export;
pub mod http;
pub mod jobs;
pub mod keys;
pub mod link;
pub mod observe;
pub mod panel;
pub mod progress;
pub mod secrets;
pub mod server;
pub mod tasks;
pub mod traffic;
