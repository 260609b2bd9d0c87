//! Sessions: [`Client::start_session`] returns a [`Session`] guard whose
//! task heartbeats on the interval the edge says, keeps the session through
//! network drops shorter than its deadline (two intervals, control's reaper
//! rule), ends it when dropped, and tells the application what happens on a
//! channel ([`Session::events`]) and in [`Session::lost`].
//!
//! Heartbeats are answered by the edges from their snapshot, so a control
//! outage does not interrupt a session; a dropped edge is failed over like
//! any call. The session is *lost* when an edge says it ended (taken over
//! by another machine, terminated by an admin, or reaped), when a license
//! rule refuses it, or when no edge answered for the whole deadline.
//! A session token past its lifetime is replaced by a new session.
//!
//! Known limit: session start carries no idempotency key in the API, so a
//! start whose answer was lost and that is retried may leave one orphan
//! session, which control's reaper ends after two intervals; on a
//! single-session license the retry then answers `SESSION_ACTIVE_ELSEWHERE`
//! unless `take_over` is set.

use std::time::{Duration, Instant};

use latchkey_shared::api::{
    ErrorBody, ErrorCode, HeartbeatRequest, HeartbeatResponse, SessionEndRequest,
    SessionEndResponse, SessionStartRequest, SessionStartResponse,
};
use reqwest::Url;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::client::{Client, parse};
use crate::error::ClientError;

/// Events buffered for an application that reads them late; older
/// heartbeats are dropped past this, never the loss (see [`Session::lost`]).
const EVENT_BUFFER: usize = 64;
/// How long ending a session on drop keeps trying.
const END_BUDGET: Duration = Duration::from_secs(5);
/// The longest single heartbeat attempt while the deadline allows more.
const HEARTBEAT_BUDGET: Duration = Duration::from_secs(5);

/// How a session is started.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// End the oldest session if the license's limit is reached (when the
    /// license allows takeovers).
    pub take_over: bool,
    /// Heartbeat at least this often, even when the edge allows longer: a
    /// takeover is then noticed sooner. The deadline stays the edge's.
    pub max_heartbeat_interval: Option<Duration>,
}

/// What the session's task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// An edge confirmed the session; the next heartbeat is due in `next_in`.
    Heartbeat { edge: Url, next_in: Duration },
    /// A heartbeat could not be delivered; retrying until the deadline.
    Interrupted { error: String },
    /// Heartbeats are answered again after an interruption.
    Resumed { edge: Url },
    /// The token reached its lifetime and a new session replaced it.
    Renewed { session_id: Uuid },
    /// The session is over; the task has stopped.
    Lost(LostReason),
}

/// Why a session is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// Control ended it: another machine took it over, an admin terminated
    /// it, or it was reaped after missing its deadline.
    Ended,
    /// A license rule refuses it now (suspended, revoked, expired, …).
    Refused(ErrorBody),
    /// No edge confirmed it for the whole deadline.
    Unreachable { silent_for: Duration },
}

/// A running session. Dropping it ends the session (in the background: use
/// [`end`](Self::end) to wait for it).
#[derive(Debug)]
pub struct Session {
    id: Uuid,
    events: mpsc::Receiver<SessionEvent>,
    lost: watch::Receiver<Option<LostReason>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Session {
    /// The session id the edge answered at start (a renewal tells its new
    /// one in [`SessionEvent::Renewed`]).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The task's events, in order.
    pub fn events(&mut self) -> &mut mpsc::Receiver<SessionEvent> {
        &mut self.events
    }

    /// Why the session is over, once it is.
    pub fn lost(&self) -> Option<LostReason> {
        self.lost.borrow().clone()
    }

    /// Waits until the session is lost.
    pub async fn wait_lost(&mut self) -> LostReason {
        let reason = self
            .lost
            .wait_for(Option::is_some)
            .await
            .map(|reason| reason.clone());
        match reason {
            Ok(Some(reason)) => reason,
            // The task is gone without a word: it was ended.
            _ => LostReason::Ended,
        }
    }

    /// Stops heartbeating and ends the session at control, waiting for it.
    pub async fn end(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The task ends the session itself; it outlives this guard.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Client {
    /// Starts a session for this machine and a task that keeps it alive.
    /// Must be called within a Tokio runtime.
    pub async fn start_session(
        &self,
        license_key: &str,
        options: SessionOptions,
    ) -> Result<Session, ClientError> {
        let key = parse(license_key)?.to_string();
        let started = self.session_start(&key, options.take_over).await?;
        let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
        let (lost_tx, lost) = watch::channel(None);
        let (stop_tx, stop) = oneshot::channel();
        let id = started.session_id;
        let beat = Beat {
            client: self.clone(),
            key,
            options,
            events: events_tx,
            lost: lost_tx,
        };
        let task = tokio::spawn(beat.run(started, stop));
        Ok(Session {
            id,
            events,
            lost,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    async fn session_start(
        &self,
        key: &str,
        take_over: bool,
    ) -> Result<SessionStartResponse, ClientError> {
        let request = SessionStartRequest {
            license_key: key.to_owned(),
            fingerprint: self.inner.fingerprint.clone(),
            app_version: self.inner.app_version.clone(),
            take_over,
        };
        self.post("api/license/session/start", &request).await
    }
}

/// The session's task.
struct Beat {
    client: Client,
    key: String,
    options: SessionOptions,
    events: mpsc::Sender<SessionEvent>,
    lost: watch::Sender<Option<LostReason>>,
}

impl Beat {
    async fn run(self, started: SessionStartResponse, mut stop: oneshot::Receiver<()>) {
        let mut token = started.session_token;
        let mut interval = secs(started.heartbeat_interval_secs);
        let mut confirmed = Instant::now();
        let mut interrupted = false;
        let mut wait = self.cadence(interval);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut stop => {
                    self.end(token).await;
                    return;
                }
            }
            let deadline = interval * 2;
            let left = deadline.saturating_sub(confirmed.elapsed());
            if left.is_zero() {
                return self.lose(LostReason::Unreachable {
                    silent_for: confirmed.elapsed(),
                });
            }
            match self.heartbeat(&token, left.min(HEARTBEAT_BUDGET)).await {
                Ok((answer, edge)) => {
                    confirmed = Instant::now();
                    interval = secs(answer.next_heartbeat_secs);
                    wait = self.cadence(interval);
                    if std::mem::take(&mut interrupted) {
                        self.tell(SessionEvent::Resumed { edge: edge.clone() });
                    }
                    self.tell(SessionEvent::Heartbeat {
                        edge,
                        next_in: wait,
                    });
                }
                Err(ClientError::Refused(body)) if body.code == ErrorCode::SessionExpired => {
                    match self.client.session_start(&self.key, false).await {
                        Ok(renewed) => {
                            token = renewed.session_token;
                            interval = secs(renewed.heartbeat_interval_secs);
                            confirmed = Instant::now();
                            wait = self.cadence(interval);
                            self.tell(SessionEvent::Renewed {
                                session_id: renewed.session_id,
                            });
                        }
                        Err(ClientError::Refused(body)) => {
                            return self.lose(LostReason::Refused(body));
                        }
                        // Unreachable: heartbeats fail the same way until the deadline.
                        Err(_) => wait = Duration::ZERO,
                    }
                }
                Err(ClientError::Refused(body)) if body.code == ErrorCode::SessionRevoked => {
                    return self.lose(LostReason::Ended);
                }
                Err(ClientError::Refused(body)) => return self.lose(LostReason::Refused(body)),
                Err(error) => {
                    if !std::mem::replace(&mut interrupted, true) {
                        self.tell(SessionEvent::Interrupted {
                            error: error.to_string(),
                        });
                    }
                    // The call's own rounds paced the retries: go again now.
                    wait = Duration::ZERO;
                }
            }
        }
    }

    async fn heartbeat(
        &self,
        token: &str,
        budget: Duration,
    ) -> Result<(HeartbeatResponse, Url), ClientError> {
        let inner = &self.client.inner;
        let request = HeartbeatRequest {
            session_token: token.to_owned(),
            fingerprint: inner.fingerprint.clone(),
            app_version: inner.app_version.clone(),
        };
        let answered = inner
            .edges
            .post("api/license/session/heartbeat", &request, budget)
            .await?;
        Ok((answered.answer, answered.edge))
    }

    async fn end(&self, token: String) {
        let request = SessionEndRequest {
            session_token: token,
        };
        // Best effort: an unreachable control leaves the session to the reaper.
        let _ = self
            .client
            .inner
            .edges
            .post::<_, SessionEndResponse>("api/license/session/end", &request, END_BUDGET)
            .await;
    }

    fn cadence(&self, interval: Duration) -> Duration {
        self.options
            .max_heartbeat_interval
            .map_or(interval, |most| most.min(interval))
    }

    fn tell(&self, event: SessionEvent) {
        let _ = self.events.try_send(event);
    }

    fn lose(&self, reason: LostReason) {
        self.lost.send_replace(Some(reason.clone()));
        self.tell(SessionEvent::Lost(reason));
    }
}

fn secs(seconds: u32) -> Duration {
    Duration::from_secs(u64::from(seconds.max(1)))
}
