//! The library a vendor embeds in an application to license it with
//! Latchkey: activate a machine, verify the license, run a session with
//! heartbeats, and keep working offline on the signed lease.
//!
//! ```no_run
//! # const PUBLIC_KEY_PEM: &str = "";
//! # async fn run() -> Result<(), latchkey_client::ClientError> {
//! use latchkey_client::{Client, SessionOptions};
//!
//! let client = Client::builder()
//!     .edges(["https://eu.licensing.example.com", "https://us.licensing.example.com"])
//!     .public_key_pem(PUBLIC_KEY_PEM) // embedded at build time: include_str!("latchkey.pem")
//!     .product("studio")
//!     .lease_file("/var/lib/studio/license.lease")
//!     .build()?;
//! let key = "7KQM3-9XWTB-2HD4E-RNV8C-J6PZY"; // what the customer typed in
//! if !client.verify(key).await?.is_valid() {
//!     client.activate(key).await?;
//! }
//! let mut session = client.start_session(key, SessionOptions::default()).await?;
//! let lost = session.wait_lost().await; // taken over, ended, or unreachable
//! # let _ = lost;
//! # Ok(())
//! # }
//! ```
//!
//! - **Fingerprint** ([`fingerprint`]): collected from the operating system,
//!   canonicalised by the shared rules, and sent only as keyed hashes of each
//!   component: no serial, UUID or MAC address leaves the machine.
//! - **Edges**: tried nearest-first by measured latency; a connection error
//!   or a retryable answer fails over to the next, with jittered backoff
//!   between rounds; a definite refusal is never asked again elsewhere.
//! - **Signed answers**: each call carries a random nonce, and an answer
//!   counts only if the edge signed it (over the nonce, the request and the
//!   answer) with a key control certified with the vendor's key; a server
//!   that is not an edge is passed over like an unreachable one. Edges with
//!   no link to control sign nothing:
//!   [`accept_unsigned_answers`](ClientBuilder::accept_unsigned_answers).
//! - **Calls**: [`Client::activate`], [`verify`](Client::verify),
//!   [`deactivate`](Client::deactivate), [`transfer`](Client::transfer) and
//!   [`refresh_lease`](Client::refresh_lease); activations and transfers
//!   carry an idempotency key made per call and kept for its retries.
//! - **Sessions** ([`Session`]): a guard that heartbeats, survives network
//!   drops within the deadline, ends the session when dropped, and reports
//!   a loss or a takeover on a channel.
//! - **Offline** ([`LeaseFile`]): the lease from the last activation or
//!   refresh, cached on disk (atomically, `0600`) and checked with the
//!   vendor's public key; verify answers from it while no edge can be
//!   reached, until its grace ends or the clock is found set back.
//! - **Blocking** ([`blocking`]): the same calls for applications without
//!   an async runtime.
//!
//! An offline answer, runnable (the edge address is closed):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use latchkey_client::{Client, Clock, LeaseFile, RetryPolicy, SystemClock, Verification};
//! use latchkey_client::shared::{Fingerprint, LicenseKey, SigningKeyPair, token};
//! use std::time::Duration;
//!
//! // What control holds, and the public half the vendor embeds.
//! let signer = SigningKeyPair::generate();
//! let key = LicenseKey::generate().to_string();
//! let dir = std::env::temp_dir().join(format!("doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let machine = Fingerprint {
//!     machine_id: Some("0123456789abcdef0123456789abcdef".into()),
//!     ..Fingerprint::default()
//! };
//! let client = Client::builder()
//!     .edges(["http://127.0.0.1:9"])
//!     .public_key_pem(&signer.public_key_pem())
//!     .fingerprint(machine)
//!     .lease_file(dir.join("app.lease"))
//!     .retry(RetryPolicy { offline_after: Duration::from_millis(300), ..RetryPolicy::default() })
//!     .build()?;
//!
//! // The lease an activation cached (here signed by hand).
//! let now = SystemClock.now();
//! let lease = token::Lease::issue(
//!     uuid::Uuid::new_v4(),
//!     key.parse::<LicenseKey>()?.hash(),
//!     client.fingerprint().canonicalize()?.hash(),
//!     1, vec!["export".into()], now, 7 * 86_400,
//! );
//! LeaseFile::new(dir.join("app.lease")).store(&token::sign(&lease, &signer), now)?;
//!
//! let answer = client.verify(&key).await?;
//! assert!(matches!(answer, Verification::Offline { .. }));
//! assert!(answer.is_valid());
//! assert_eq!(answer.features(), ["export"]);
//! # std::fs::remove_dir_all(dir)?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod blocking;
mod client;
mod clock;
mod config;
mod edges;
mod error;
pub mod fingerprint;
mod lease;
mod session;

/// The shared vocabulary: API types, fingerprints, keys, tokens.
pub use latchkey_shared as shared;
/// Edge URLs, as events and probes name them.
pub use reqwest::Url;

pub use client::{Client, Verification};
pub use clock::{Clock, SystemClock};
pub use config::{ClientBuilder, RetryPolicy};
pub use error::{ClientError, LeaseError};
pub use lease::{CachedLease, LeaseCheck, LeaseFile};
pub use session::{LostReason, Session, SessionEvent, SessionOptions};
