//! Background jobs that run inside `serve`: the session reaper, heartbeat
//! partition maintenance, quarantine expiry, the usage-period refresh and,
//! with `backups.daily_at` set, the scheduled backup.
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

use crate::backup::Backups;
use crate::db::{backups, partitions, resources, sessions, usage};

/// What the jobs need from the configuration.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub heartbeat_retention_months: u32,
    pub partitions_ahead_months: u32,
    /// Backups; scheduled only when `backups.daily_at` is set.
    pub backups: Backups,
}

/// Starts every job; they stop when the returned handles are aborted.
pub fn spawn_all(pool: PgPool, settings: JobSettings) -> Vec<JoinHandle<()>> {
    // A stale session ends at most this long past its deadline, whatever
    // the intervals (10 s to a day) of the products and the edge config.
    let reap_every = Duration::from_secs(60);
    let (retention_months, ahead_months) = (
        settings.heartbeat_retention_months,
        settings.partitions_ahead_months,
    );
    let mut jobs = vec![
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
                let done =
                    partitions::maintain(&pool, today, ahead_months, retention_months).await?;
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
            pool.clone(),
            |pool| async move {
                let cleared = usage::refresh(&pool, OffsetDateTime::now_utc()).await?;
                Ok(format!("{cleared} licenses no longer over a usage limit"))
            },
        ),
    ];
    if settings.backups.config().daily_at.is_some() {
        jobs.push(tokio::spawn(scheduled_backups(pool, settings.backups)));
    }
    jobs
}

/// Checks every minute whether the newest slot has its backup. Unlike the
/// other jobs, its success time is a made backup's, never an idle check's:
/// `LatchkeyBackupTooOld` watches it. Read from the database at start, so a
/// restart does not forget the last one.
async fn scheduled_backups(pool: PgPool, backups: Backups) {
    const TASK: &str = "backup";
    match backups::newest_done(&pool).await {
        Ok(Some(at)) => last_success(TASK, at),
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "cannot read the newest backup"),
    }
    let mut ticks = tokio::time::interval(Duration::from_secs(60));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match backups.run_schedule(&pool, OffsetDateTime::now_utc()).await {
            Ok(None) => {}
            Ok(Some(made)) => {
                runs(TASK, "ok");
                last_success(
                    TASK,
                    made.finished_at.unwrap_or_else(OffsetDateTime::now_utc),
                );
            }
            Err(error) => {
                tracing::error!(error = %crate::error::cause_chain(&error), "scheduled backup failed; the next slot tries again");
                runs(TASK, "failed");
            }
        }
    }
}

fn runs(task: &'static str, outcome: &'static str) {
    metrics::counter!("latchkey_control_job_runs_total", "task" => task, "outcome" => outcome)
        .increment(1);
}

fn last_success(task: &'static str, at: OffsetDateTime) {
    metrics::gauge!("latchkey_control_job_last_success_timestamp_seconds", "task" => task)
        .set(at.unix_timestamp() as f64);
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
                    runs(name, "ok");
                    last_success(name, OffsetDateTime::now_utc());
                }
                Err(error) => {
                    tracing::warn!(job = name, error = %format!("{error:#}"), "job failed; retrying at the next tick");
                    runs(name, "failed");
                }
            }
        }
    })
}
