//! Blocked networks: the automatic blocks of the login guard and manual ones
//! (an address or CIDR), listed, added and lifted.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::error::{PanelError, PanelResult};
use super::form::Form;
use super::pages::Layout;
use super::session::{AdminUser, Viewer};
use crate::db::logins::{self, Block};
use crate::panel::PanelState;

const MAX_REASON_CHARS: usize = 256;

#[derive(Debug, Template, WebTemplate)]
#[template(path = "blocked_ips.html")]
pub struct BlockedIpsPage {
    layout: Layout,
    blocks: Vec<Block>,
}

#[derive(Debug, Deserialize)]
pub struct BlockForm {
    network: String,
    reason: String,
    /// Empty: until lifted.
    #[serde(default)]
    hours: String,
}

pub async fn page(viewer: Viewer, State(state): State<PanelState>) -> PanelResult<BlockedIpsPage> {
    Ok(BlockedIpsPage {
        layout: Layout::new(&viewer, "Blocked IPs", "/settings"),
        blocks: logins::list_active(&state.pool).await?,
    })
}

pub async fn add(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(form): Form<BlockForm>,
) -> PanelResult<Response> {
    let reason = form.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(PanelError::Invalid(format!(
            "reason: 1 to {MAX_REASON_CHARS} characters"
        )));
    }
    let expires_at = match form.hours.trim() {
        "" => None,
        hours => {
            let hours: u16 = hours
                .parse()
                .map_err(|_| PanelError::Invalid("hours: a whole number, or empty".into()))?;
            Some(OffsetDateTime::now_utc() + time::Duration::hours(i64::from(hours)))
        }
    };
    logins::block(
        &state.pool,
        &admin.ctx,
        form.network.trim(),
        reason,
        Some(admin.admin_id()),
        expires_at,
    )
    .await?;
    Ok(Redirect::to("/blocked-ips").into_response())
}

pub async fn lift(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<i64>,
) -> PanelResult<Response> {
    logins::lift(&state.pool, &admin.ctx, id, admin.admin_id()).await?;
    Ok(Redirect::to("/blocked-ips").into_response())
}
