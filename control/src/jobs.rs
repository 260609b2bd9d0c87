//! Background jobs that run inside `serve`: the session reaper, heartbeat
//! partition maintenance, quarantine expiry and the usage-period refresh.
//!
//! Each job runs on its own interval; a failed run is logged, counted in
//! `latchkey_control_job_runs_total{task,outcome="failed"}` and retried at
//! the next tick, never fatal. The label is `task`, not `job`: Prometheus
//! gives every target a `job` label, and a metric's own would be renamed
//! `exported_job` at scrape. Several control replicas may run them at
//! once: every job is an idempotent transaction, so that is safe.

use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use crate::db::{partitions, resources, sessions, usage};

/// What the jobs need from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct JobSettings {
    pub heartbeat_retention_months: u32,
    pub partitions_ahead_months: u32,
}

/// Starts every job; they stop when the returned handles are aborted.
pub fn spawn_all(pool: PgPool, settings: JobSettings) -> Vec<JoinHandle<()>> {
    // A stale session ends at most this long past its deadline, whatever
    // the intervals (10 s to a day) of the products and the edge config.
    let reap_every = Duration::from_secs(60);
    vec![
        every(
            "session_reaper",
            reap_every,
            pool.clone(),
            move |pool| async move {
                let ended = sessions::reap(&pool, OffsetDateTime::now_utc()).await?;
                Ok(format!("{ended} stale sessions ended"))
            },
        ),
        every(
            "heartbeat_partitions",
            Duration::from_secs(3600),
            pool.clone(),
            move |pool| async move {
                let today = OffsetDateTime::now_utc().date();
                let done = partitions::maintain(
                    &pool,
                    today,
                    settings.partitions_ahead_months,
                    settings.heartbeat_retention_months,
                )
                .await?;
                // What exists, not what this run made: a partition dropped by
                // hand shows here at the next run.
                let ready = partitions::months_ready_ahead(&partitions::list(&pool).await?, today);
                metrics::gauge!("latchkey_control_heartbeat_partitions_ahead_months")
                    .set(f64::from(ready));
                Ok(format!(
                    "{} partitions created, retired {:?}",
                    done.created, done.retired
                ))
            },
        ),
        every(
            "quarantine_expiry",
            Duration::from_secs(60),
            pool.clone(),
            |pool| async move {
                let restored =
                    resources::restore_expired_quarantine(&pool, OffsetDateTime::now_utc()).await?;
                Ok(format!("{restored} resources back from quarantine"))
            },
        ),
        every(
            "usage_period_refresh",
            Duration::from_secs(3600),
            pool,
            |pool| async move {
                let cleared = usage::refresh(&pool, OffsetDateTime::now_utc()).await?;
                Ok(format!("{cleared} licenses no longer over a usage limit"))
            },
        ),
    ]
}

fn every<F, Fut>(name: &'static str, period: Duration, pool: PgPool, job: F) -> JoinHandle<()>
where
    F: Fn(PgPool) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<String>> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match job(pool.clone()).await {
                Ok(outcome) => {
                    tracing::debug!(job = name, outcome, "job ran");
                    metrics::counter!("latchkey_control_job_runs_total", "task" => name, "outcome" => "ok")
                        .increment(1);
                    metrics::gauge!("latchkey_control_job_last_success_timestamp_seconds", "task" => name)
                        .set(OffsetDateTime::now_utc().unix_timestamp() as f64);
                }
                Err(error) => {
                    tracing::warn!(job = name, error = %format!("{error:#}"), "job failed; retrying at the next tick");
                    metrics::counter!("latchkey_control_job_runs_total", "task" => name, "outcome" => "failed")
                        .increment(1);
                }
            }
        }
    })
}
