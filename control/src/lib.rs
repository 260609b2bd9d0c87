//! Latchkey's control plane: the source of truth (PostgreSQL), the admin
//! panel and API, and the snapshot publisher. Today: signing-key management
//! and demo snapshots; the database domain arrives with the control issue.

pub mod config;
pub mod context;
pub mod db;
pub mod demo;
pub mod error;
pub mod http;
pub mod jobs;
pub mod keys;
pub mod link;
pub mod panel;
pub mod secrets;
