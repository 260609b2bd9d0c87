//! `/backups`: the backups made (by hand or on schedule), "back up now",
//! deleting one, and restore in two steps: verify into a scratch database,
//! then swap it in, which needs a fresh two-factor code. The dump and the
//! restore run as this replica's [`Tasks`](crate::tasks::Tasks), so
//! closing the browser does not stop them; the page shows each one's
//! progress from its event stream (`/tasks/{id}/events`) and lists the
//! outcomes.

use std::sync::{Arc, Mutex};

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::{PanelError, PanelResult};
use super::form::Form;
use super::pages::Layout;
use super::session::{AdminUser, Viewer};
use super::tasks::TaskList;
use super::totp;
use crate::backup::{Prepared, Swapped};
use crate::db::admins;
use crate::db::backups::{self, Backup};
use crate::error::cause_chain;
use crate::panel::PanelState;

/// Backups listed on the page.
const LISTED: i64 = 200;

/// Where this replica's restore stands.
#[derive(Debug, Clone, Default)]
pub enum RestoreStatus {
    #[default]
    Idle,
    Verifying {
        backup: Uuid,
        since: OffsetDateTime,
        /// The task its progress is followed by.
        task: Uuid,
    },
    Verified(Box<Prepared>),
    Swapping,
    Swapped {
        swapped: Swapped,
        at: OffsetDateTime,
    },
    Failed {
        error: String,
    },
}

impl RestoreStatus {
    fn busy(&self) -> bool {
        matches!(self, Self::Verifying { .. } | Self::Swapping)
    }
}

pub type Restore = Arc<Mutex<RestoreStatus>>;

#[derive(Debug, Template, WebTemplate)]
#[template(path = "backups.html")]
pub struct BackupsPage {
    layout: Layout,
    backups: Vec<Backup>,
    restore: RestoreStatus,
    /// This replica's jobs, newest first: running ones with their progress.
    tasks: TaskList,
    dir: String,
    schedule: Option<String>,
    keep_daily: u32,
    keep_weekly: u32,
    admin_has_2fa: bool,
}

pub async fn page(viewer: Viewer, State(state): State<PanelState>) -> PanelResult<BackupsPage> {
    let backups = backups::list(&state.pool, LISTED).await?;
    let restore = state.restore.lock().expect("restore status").clone();
    let config = state.backups.config();
    let admin_has_2fa = admins::find(&state.pool, viewer.admin_id())
        .await?
        .is_some_and(|account| account.totp_enabled_at.is_some());
    Ok(BackupsPage {
        layout: Layout::new(&viewer, "Backups", "/backups"),
        tasks: TaskList(state.tasks.list()),
        backups,
        restore,
        dir: config.dir.display().to_string(),
        schedule: config.daily_at.map(|at| at.to_string()),
        keep_daily: config.keep_daily,
        keep_weekly: config.keep_weekly,
        admin_has_2fa,
    })
}

/// Starts a dump and answers at once with the page, which lists it running.
pub async fn create(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
) -> PanelResult<Response> {
    let id = state
        .backups
        .begin(&state.pool, &admin.ctx, None)
        .await
        .map_err(internal)?
        .ok_or_else(|| PanelError::Internal("a manual backup always starts".into()))?;
    let by = admin.session.username.clone();
    state
        .tasks
        .clone()
        .spawn(id, "Backup".into(), by, move |progress| async move {
            match state.backups.complete(&state.pool, id, &progress).await {
                Ok(made) => Ok(format!(
                    "{} bytes in {} ms",
                    made.size_bytes.unwrap_or_default(),
                    made.duration_ms.unwrap_or_default()
                )),
                Err(error) => {
                    let error = cause_chain(&error);
                    tracing::error!(%id, %error, "backup failed");
                    Err(error)
                }
            }
        });
    Ok(Redirect::to("/backups").into_response())
}

pub async fn delete(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<Response> {
    let backup = backups::get(&state.pool, id).await?;
    if backup.status == "running" {
        return Err(PanelError::Invalid(
            "this backup is still running: delete it when it is done".into(),
        ));
    }
    state
        .backups
        .delete(&state.pool, &admin.ctx, &backup)
        .await
        .map_err(internal)?;
    Ok(Redirect::to("/backups").into_response())
}

/// Restores a backup into a scratch database and verifies it; the live
/// database is not touched.
pub async fn verify(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<Response> {
    let backup = backups::get(&state.pool, id).await?;
    let path = match (&backup.status[..], &backup.path) {
        ("done", Some(path)) => std::path::PathBuf::from(path),
        _ => {
            return Err(PanelError::Invalid(
                "only a finished backup can be restored".into(),
            ));
        }
    };
    let task = Uuid::new_v4();
    {
        let mut status = state.restore.lock().expect("restore status");
        if status.busy() || matches!(*status, RestoreStatus::Verified(_)) {
            return Err(PanelError::Invalid(
                "a restore is under way: swap it in or discard it first".into(),
            ));
        }
        *status = RestoreStatus::Verifying {
            backup: id,
            since: OffsetDateTime::now_utc(),
            task,
        };
    }
    let by = admin.session.username.clone();
    state.tasks.clone().spawn(
        task,
        "Restore into a scratch database".into(),
        by,
        move |progress| async move {
            let (outcome, summary) = match state.backups.prepare_restore(&path, &progress).await {
                Ok(prepared) => {
                    let summary = Ok(format!("verified in {}", prepared.scratch));
                    (RestoreStatus::Verified(Box::new(prepared)), summary)
                }
                Err(error) => {
                    let error = cause_chain(&error);
                    let failed = RestoreStatus::Failed {
                        error: error.clone(),
                    };
                    (failed, Err(error))
                }
            };
            *state.restore.lock().expect("restore status") = outcome;
            summary
        },
    );
    Ok(Redirect::to("/backups").into_response())
}

#[derive(Debug, Deserialize)]
pub struct SwapForm {
    code: String,
}

/// Swaps the verified copy in, on a two-factor code of the admin's.
pub async fn swap(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(form): Form<SwapForm>,
) -> PanelResult<Response> {
    confirm_second_factor(&state, &admin, &form.code).await?;
    let prepared = {
        let mut status = state.restore.lock().expect("restore status");
        let RestoreStatus::Verified(prepared) = std::mem::take(&mut *status) else {
            return Err(PanelError::Invalid(
                "nothing is verified to swap in: verify a backup first".into(),
            ));
        };
        *status = RestoreStatus::Swapping;
        prepared
    };
    tracing::warn!(admin = %admin.admin_id(), scratch = %prepared.scratch, "restore confirmed: swapping in");
    tokio::spawn(async move {
        let outcome = match state.backups.swap(&prepared).await {
            Ok(swapped) => RestoreStatus::Swapped {
                swapped,
                at: OffsetDateTime::now_utc(),
            },
            Err(error) => RestoreStatus::Failed {
                error: cause_chain(&error),
            },
        };
        *state.restore.lock().expect("restore status") = outcome;
    });
    Ok(Redirect::to("/backups").into_response())
}

/// Drops a verified copy, or forgets a finished or failed restore.
pub async fn discard(
    AdminUser(_admin): AdminUser,
    State(state): State<PanelState>,
) -> PanelResult<Response> {
    let previous = {
        let mut status = state.restore.lock().expect("restore status");
        if status.busy() {
            return Err(PanelError::Invalid(
                "the restore is running: wait for it to finish".into(),
            ));
        }
        std::mem::take(&mut *status)
    };
    if let RestoreStatus::Verified(prepared) = previous {
        state.backups.discard(&prepared).await.map_err(internal)?;
    }
    Ok(Redirect::to("/backups").into_response())
}

/// A restore replaces every row: it needs the admin's current TOTP code
/// (not a recovery code), once.
async fn confirm_second_factor(state: &PanelState, admin: &Viewer, code: &str) -> PanelResult<()> {
    let account = admins::find(&state.pool, admin.admin_id())
        .await?
        .ok_or(PanelError::LoginRequired)?;
    if account.totp_enabled_at.is_none() {
        return Err(PanelError::Invalid(
            "a restore needs two-factor login: turn it on in Settings first".into(),
        ));
    }
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let step = match code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        true => totp::matching_step(state, &account, &code)?,
        false => None,
    };
    match step {
        Some(step) if admins::claim_totp_step(&state.pool, account.id, step).await? => Ok(()),
        _ => Err(PanelError::Invalid(
            "code: not your current two-factor code".into(),
        )),
    }
}

fn internal(error: crate::backup::BackupError) -> PanelError {
    match error {
        crate::backup::BackupError::Domain(domain) => PanelError::Domain(domain),
        other => PanelError::Internal(cause_chain(&other)),
    }
}
