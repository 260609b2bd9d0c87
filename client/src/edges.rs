//! The edges a client talks to: ordered nearest-first by measured latency
//! (`GET /healthz`, all at once), a failed edge moved to the back for a
//! while, and every call tried edge after edge.
//!
//! Failover is decided by the answer (one place, [`classify`]): a
//! connection error, a timeout, a `5xx`, `408`, `429` or an [`ErrorBody`]
//! whose code is `retryable` (the shared [`ErrorCode::retryable`]) tries the
//! next edge; after a round over all of them the client waits a jittered,
//! doubling delay and goes round again until the call's budget is spent.
//! Any other answer is definite: a license refused on one edge is refused
//! on every edge, so it is never asked again elsewhere.
//!
//! Every call carries a fresh nonce, and an answer is believed only when
//! the edge signed it over that nonce and the request with a key control
//! certified (the shared `answer` module): anything else, whatever it says,
//! is a server that may not be an edge, and the next edge is asked.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey_shared::TrustedKeys;
use latchkey_shared::answer::{self, CERTIFICATE_HEADER, Exchange, NONCE_HEADER, SIGNATURE_HEADER};
use latchkey_shared::api::{ErrorBody, ErrorCode};
use rand_core::{OsRng, RngCore};
use reqwest::{StatusCode, Url, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::config::RetryPolicy;
use crate::error::ClientError;

/// How long a failed edge stays at the back of the order.
const FAILURE_MEMORY: Duration = Duration::from_secs(30);
/// How often latencies are measured again.
const REPROBE_AFTER: Duration = Duration::from_secs(300);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(crate) struct Edges {
    http: reqwest::Client,
    urls: Vec<Url>,
    retry: RetryPolicy,
    signatures: Signatures,
    ranking: Mutex<Ranking>,
}

/// Whether answers must be signed, and what checks them.
#[derive(Debug, Clone)]
pub(crate) enum Signatures {
    /// With the vendor's keys, at the client's time.
    Required {
        trusted: TrustedKeys,
        clock: Arc<dyn Clock>,
    },
    /// The vendor chose to accept unsigned answers.
    NotRequired,
}

#[derive(Debug, Default)]
struct Ranking {
    measured_at: Option<Instant>,
    latency: Vec<Option<Duration>>,
    failed_at: Vec<Option<Instant>>,
}

/// One answer, and which edge gave it.
#[derive(Debug)]
pub(crate) struct Answered<T> {
    pub answer: T,
    pub edge: Url,
}

/// What one attempt at one edge came to.
#[derive(Debug)]
enum Attempt<T> {
    Done(T),
    Definite(ErrorBody),
    /// Try elsewhere; the delay an edge asked for (`Retry-After`).
    Retry {
        why: String,
        after: Option<Duration>,
    },
}

impl Edges {
    pub fn new(
        http: reqwest::Client,
        urls: Vec<Url>,
        retry: RetryPolicy,
        signatures: Signatures,
    ) -> Self {
        let ranking = Ranking {
            measured_at: None,
            latency: vec![None; urls.len()],
            failed_at: vec![None; urls.len()],
        };
        Self {
            http,
            urls,
            retry,
            signatures,
            ranking: Mutex::new(ranking),
        }
    }

    /// Measures every edge's latency now, and returns them in the order
    /// calls will try them (unreachable ones last, as `None`).
    pub async fn probe(&self) -> Vec<(Url, Option<Duration>)> {
        let mut probes = JoinSet::new();
        for (index, url) in self.urls.iter().enumerate() {
            let (http, url) = (self.http.clone(), join(url, "healthz"));
            probes.spawn(async move {
                let started = Instant::now();
                let answer = http.get(url).timeout(PROBE_TIMEOUT).send().await;
                let reached = answer.is_ok_and(|a| a.status().is_success());
                (index, reached.then(|| started.elapsed()))
            });
        }
        let mut latency = vec![None; self.urls.len()];
        while let Some(Ok((index, took))) = probes.join_next().await {
            latency[index] = took;
        }
        {
            let mut ranking = self.ranking.lock().expect("ranking lock");
            ranking.latency = latency;
            ranking.measured_at = Some(Instant::now());
        }
        let ranking = self.ranking.lock().expect("ranking lock");
        self.order(&ranking)
            .into_iter()
            .map(|i| (self.urls[i].clone(), ranking.latency[i]))
            .collect()
    }

    /// `POST path` with `body` at edge after edge, until an answer or the
    /// end of `budget`.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        budget: Duration,
    ) -> Result<Answered<T>, ClientError> {
        let started = Instant::now();
        if self.urls.is_empty() {
            return Err(ClientError::Unavailable {
                attempts: 0,
                last: "no edge is configured".into(),
            });
        }
        if self.needs_probe() {
            self.probe().await;
        }
        let mut attempts = 0u32;
        let mut round = 0u32;
        let mut last = String::from("no edge was tried");
        loop {
            let mut asked_delay = None;
            for index in self.current_order() {
                attempts += 1;
                let url = join(&self.urls[index], path);
                match self.attempt(url, body).await {
                    Attempt::Done(answer) => {
                        self.mark(index, None);
                        return Ok(Answered {
                            answer,
                            edge: self.urls[index].clone(),
                        });
                    }
                    Attempt::Definite(body) => {
                        self.mark(index, None);
                        return Err(ClientError::Refused(body));
                    }
                    Attempt::Retry { why, after } => {
                        self.mark(index, Some(Instant::now()));
                        last = format!("{}: {why}", self.urls[index]);
                        asked_delay = asked_delay.max(after);
                    }
                }
                if started.elapsed() >= budget {
                    return Err(ClientError::Unavailable { attempts, last });
                }
            }
            round += 1;
            let delay = asked_delay.map_or_else(
                || self.retry.delay(round),
                |asked| asked.min(self.retry.max_delay),
            );
            if started.elapsed() + delay >= budget {
                return Err(ClientError::Unavailable { attempts, last });
            }
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt<B: Serialize, T: DeserializeOwned>(&self, url: Url, body: &B) -> Attempt<T> {
        let body = serde_json::to_vec(body).expect("request types always serialize");
        let mut request = self
            .http
            .post(url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        // Asked for only when it is checked: signing is most of an edge's
        // work for a verify.
        let nonce = self.signatures.required().then(answer::new_nonce);
        if let Some(nonce) = &nonce {
            request = request.header(NONCE_HEADER, nonce);
        }
        let sent = request.send().await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Attempt::Retry {
                    why: describe(&error),
                    after: None,
                };
            }
        };
        let status = response.status();
        let text = |name| {
            let value = response.headers().get(name)?.to_str().ok()?;
            Some(value.to_owned())
        };
        let (certificate, signature) = (text(CERTIFICATE_HEADER), text(SIGNATURE_HEADER));
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => {
                return Attempt::Retry {
                    why: describe(&error),
                    after: None,
                };
            }
        };
        if let (Some(nonce), Signatures::Required { trusted, clock }) = (&nonce, &self.signatures) {
            let exchange = Exchange {
                nonce,
                path: url.path(),
                request_body: &body,
                status: status.as_u16(),
                response_body: &bytes,
            };
            let checked = answer::verify(
                trusted,
                clock.now(),
                &exchange,
                certificate.as_deref(),
                signature.as_deref(),
            );
            if let Err(why) = checked {
                return Attempt::Retry {
                    why: format!("{status} not believed: {why}"),
                    after: retry_after,
                };
            }
        }
        classify(status, &bytes, retry_after)
    }

    fn needs_probe(&self) -> bool {
        let ranking = self.ranking.lock().expect("ranking lock");
        self.urls.len() > 1
            && ranking
                .measured_at
                .is_none_or(|at| at.elapsed() > REPROBE_AFTER)
    }

    fn current_order(&self) -> Vec<usize> {
        let ranking = self.ranking.lock().expect("ranking lock");
        self.order(&ranking)
    }

    /// Edges that answered before, nearest first; then unmeasured ones in
    /// the order given; recently failed ones last, oldest failure first.
    fn order(&self, ranking: &Ranking) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.urls.len()).collect();
        order.sort_by_key(|&i| {
            let failed = ranking.failed_at[i].filter(|at| at.elapsed() < FAILURE_MEMORY);
            (
                failed.is_some(),
                failed.map(|at| std::cmp::Reverse(at.elapsed())),
                ranking.latency[i].is_none(),
                ranking.latency[i],
                i,
            )
        });
        order
    }

    fn mark(&self, index: usize, failed_at: Option<Instant>) {
        self.ranking.lock().expect("ranking lock").failed_at[index] = failed_at;
    }
}

impl Signatures {
    fn required(&self) -> bool {
        matches!(self, Self::Required { .. })
    }
}

/// The one place an answer is judged: done, definite, or try elsewhere.
fn classify<T: DeserializeOwned>(
    status: StatusCode,
    bytes: &[u8],
    retry_after: Option<Duration>,
) -> Attempt<T> {
    let retry = |why: String| Attempt::Retry {
        why,
        after: retry_after,
    };
    if status.is_success() {
        return match serde_json::from_slice(bytes) {
            Ok(answer) => Attempt::Done(answer),
            // Not an edge's answer (a captive portal, a proxy page): elsewhere.
            Err(error) => retry(format!("{status} with an unreadable body: {error}")),
        };
    }
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) if body.retryable || body.code.retryable() => {
            retry(format!("{} ({})", body.message, body.code))
        }
        Ok(body) => Attempt::Definite(body),
        Err(_)
            if status.is_server_error()
                || status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS =>
        {
            retry(format!("{status}"))
        }
        // A 4xx that is not ours: this URL is not a Latchkey edge, and asking
        // it again will not change that.
        Err(_) => Attempt::Definite(ErrorBody::new(
            ErrorCode::NotFound,
            format!("{status} without a Latchkey error body: is the edge URL right?"),
        )),
    }
}

/// An edge URL with `path` below it (`https://host/base/` + `api/…`).
fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    if !url.path().ends_with('/') {
        let with_slash = format!("{}/", url.path());
        url.set_path(&with_slash);
    }
    url.join(path.trim_start_matches('/'))
        .expect("a relative path joins any http(s) URL")
}

fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = format!("{kind}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

impl RetryPolicy {
    /// The wait before round `round` (1, 2, …): doubling from `base_delay`,
    /// at most `max_delay`, and a random point in its upper half, so clients
    /// that failed together do not come back together.
    pub(crate) fn delay(&self, round: u32) -> Duration {
        let doubled = self
            .base_delay
            .saturating_mul(1u32 << round.saturating_sub(1).min(16));
        let ceiling = doubled.min(self.max_delay);
        let half = ceiling / 2;
        let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_micros(OsRng.next_u64() % spread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_its_bounds_and_is_jittered() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            ..RetryPolicy::default()
        };
        for round in 1..40 {
            let ceiling = (Duration::from_millis(100) * 2u32.pow(round.min(16) - 1))
                .min(Duration::from_secs(2));
            let delays: Vec<Duration> = (0..50).map(|_| policy.delay(round)).collect();
            assert!(
                delays.iter().all(|d| *d >= ceiling / 2 && *d <= ceiling),
                "round {round}: {delays:?}"
            );
            assert!(delays.iter().any(|d| *d != delays[0]), "jittered");
        }
    }

    #[test]
    fn answers_are_definite_unless_they_say_to_retry() {
        let body = |code: ErrorCode| serde_json::to_vec(&ErrorBody::new(code, "x")).unwrap();
        let judge = |status: u16, bytes: &[u8]| {
            classify::<serde_json::Value>(StatusCode::from_u16(status).unwrap(), bytes, None)
        };
        assert!(matches!(judge(200, b"{\"valid\":true}"), Attempt::Done(_)));
        assert!(matches!(
            judge(403, &body(ErrorCode::LicenseSuspended)),
            Attempt::Definite(b) if b.code == ErrorCode::LicenseSuspended
        ));
        assert!(matches!(
            judge(404, &body(ErrorCode::DeviceNotFound)),
            Attempt::Definite(_)
        ));
        for retryable in [
            ErrorCode::ControlUnavailable,
            ErrorCode::SnapshotExpired,
            ErrorCode::NotReady,
            ErrorCode::RateLimited,
            ErrorCode::Internal,
        ] {
            let status = retryable.http_status();
            assert!(
                matches!(judge(status, &body(retryable)), Attempt::Retry { .. }),
                "{retryable}"
            );
        }
        assert!(matches!(
            judge(502, b"<html>bad gateway</html>"),
            Attempt::Retry { .. }
        ));
        assert!(matches!(
            judge(200, b"<html>portal</html>"),
            Attempt::Retry { .. }
        ));
        assert!(matches!(
            judge(404, b"<html>nope</html>"),
            Attempt::Definite(_)
        ));
    }

    #[test]
    fn paths_join_below_a_base_path() {
        let base: Url = "https://licensing.example.com/latchkey".parse().unwrap();
        assert_eq!(
            join(&base, "/api/license/verify").as_str(),
            "https://licensing.example.com/latchkey/api/license/verify"
        );
        let root: Url = "http://127.0.0.1:8443".parse().unwrap();
        assert_eq!(
            join(&root, "healthz").as_str(),
            "http://127.0.0.1:8443/healthz"
        );
    }
}
