//! The same client for applications without an async runtime: each call
//! blocks on a small runtime of the client's own (one worker thread, which
//! also runs the session heartbeats between calls).
//!
//! Do not call these from inside an async runtime: blocking on one there
//! panics. Use [`crate::Client`] instead.

use std::sync::Arc;
use std::time::Duration;

use latchkey_shared::api::{ActivateResponse, DeactivateResponse, LeaseResponse};
use latchkey_shared::token::Lease;
use tokio::runtime::Runtime;
use uuid::Uuid;

use crate::config::ClientBuilder;
use crate::error::ClientError;
use crate::session::{LostReason, SessionEvent, SessionOptions};
use crate::{Client as AsyncClient, Session as AsyncSession, Verification};

/// A blocking [`crate::Client`].
#[derive(Debug, Clone)]
pub struct Client {
    runtime: Arc<Runtime>,
    inner: AsyncClient,
}

/// A blocking [`crate::Session`]: dropping it ends the session and waits
/// (at most a few seconds) for control to hear it.
#[derive(Debug)]
pub struct Session {
    runtime: Arc<Runtime>,
    inner: Option<AsyncSession>,
}

impl Client {
    pub fn new(builder: ClientBuilder) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("latchkey-client")
            .enable_all()
            .build()
            .map_err(|e| ClientError::Config(format!("the client's runtime: {e}")))?;
        Ok(Self {
            runtime: Arc::new(runtime),
            inner: builder.build()?,
        })
    }

    pub fn activate(&self, license_key: &str) -> Result<ActivateResponse, ClientError> {
        self.runtime.block_on(self.inner.activate(license_key))
    }

    pub fn verify(&self, license_key: &str) -> Result<Verification, ClientError> {
        self.runtime.block_on(self.inner.verify(license_key))
    }

    pub fn verify_feature(
        &self,
        license_key: &str,
        feature: &str,
    ) -> Result<Verification, ClientError> {
        self.runtime
            .block_on(self.inner.verify_feature(license_key, feature))
    }

    pub fn deactivate(&self, license_key: &str) -> Result<DeactivateResponse, ClientError> {
        self.runtime.block_on(self.inner.deactivate(license_key))
    }

    pub fn transfer(
        &self,
        license_key: &str,
        from_device_id: Uuid,
    ) -> Result<ActivateResponse, ClientError> {
        self.runtime
            .block_on(self.inner.transfer(license_key, from_device_id))
    }

    pub fn refresh_lease(&self, license_key: &str) -> Result<LeaseResponse, ClientError> {
        self.runtime.block_on(self.inner.refresh_lease(license_key))
    }

    pub fn offline_lease(&self, license_key: &str) -> Result<Lease, ClientError> {
        self.inner.offline_lease(license_key)
    }

    pub fn start_session(
        &self,
        license_key: &str,
        options: SessionOptions,
    ) -> Result<Session, ClientError> {
        let session = self
            .runtime
            .block_on(self.inner.start_session(license_key, options))?;
        Ok(Session {
            runtime: self.runtime.clone(),
            inner: Some(session),
        })
    }
}

impl Session {
    pub fn id(&self) -> Uuid {
        self.session().id()
    }

    pub fn lost(&self) -> Option<LostReason> {
        self.session().lost()
    }

    /// The next event, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Option<SessionEvent> {
        let runtime = self.runtime.clone();
        let events = self.inner.as_mut().expect("a live session").events();
        runtime
            .block_on(tokio::time::timeout(timeout, events.recv()))
            .ok()
            .flatten()
    }

    fn session(&self) -> &AsyncSession {
        self.inner.as_ref().expect("a live session")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(session) = self.inner.take() {
            self.runtime.block_on(session.end());
        }
    }
}
