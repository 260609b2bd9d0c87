//! Settings: the admin's own 2FA state and live sessions (revocable), and
//! for role `admin`, every admin with a 2FA reset.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use uuid::Uuid;

use super::error::{PanelError, PanelResult};
use super::pages::Layout;
use super::session::{AdminUser, Viewer};
use crate::db::admin_sessions::{self, SessionSummary};
use crate::db::admins::{self, AdminSummary};
use crate::panel::PanelState;

#[derive(Debug, Template, WebTemplate)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    layout: Layout,
    totp_enabled: bool,
    sessions: Vec<SessionRow>,
    admins: Vec<AdminSummary>,
}

#[derive(Debug)]
pub struct SessionRow {
    /// The hex of the session's hash: names it in URLs, reveals no cookie.
    pub id: String,
    pub current: bool,
    pub summary: SessionSummary,
}

pub async fn page(viewer: Viewer, State(state): State<PanelState>) -> PanelResult<SettingsPage> {
    let sessions = admin_sessions::list_live(
        &state.pool,
        viewer.admin_id(),
        state.config.idle_timeout_secs,
    )
    .await?
    .into_iter()
    .map(|summary| SessionRow {
        id: hex::encode(&summary.id_hash),
        current: summary.id_hash == viewer.session.id_hash,
        summary,
    })
    .collect();
    let admins = if viewer.is_admin() {
        admins::list(&state.pool).await?
    } else {
        Vec::new()
    };
    Ok(SettingsPage {
        layout: Layout::new(&viewer, "Settings", "/settings"),
        totp_enabled: viewer.session.totp_enabled,
        sessions,
        admins,
    })
}

/// Ends one of the caller's own sessions (any role may).
pub async fn revoke_session(
    viewer: Viewer,
    State(state): State<PanelState>,
    Path(id): Path<String>,
) -> PanelResult<Response> {
    let id_hash = hex::decode(&id).map_err(|_| PanelError::NotFound)?;
    let revoked = admin_sessions::revoke(
        &state.pool,
        &viewer.ctx,
        viewer.admin_id(),
        &id_hash,
        "admin_session.revoke",
    )
    .await?;
    if !revoked {
        return Err(PanelError::NotFound);
    }
    let target = if id_hash == viewer.session.id_hash {
        "/login"
    } else {
        "/settings"
    };
    Ok(Redirect::to(target).into_response())
}

/// Clears another admin's (or one's own) 2FA so they can enrol again.
pub async fn reset_two_factor(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<Response> {
    admins::reset_totp(&state.pool, &admin.ctx, id).await?;
    Ok(Redirect::to("/settings").into_response())
}
