//! The dashboard: numbers rendered with the page, then kept current by a
//! Server-Sent Events stream (`/events/dashboard`) that `app.js` applies in
//! place. The stream re-checks the session on every tick (without
//! restarting its idle clock) and ends when the session does.

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream;
use serde::Serialize;

use super::error::PanelResult;
use super::pages::Layout;
use super::session::{Viewer, still_live};
use crate::db::dashboard::{self, EdgeLag, Stats};
use crate::panel::PanelState;

#[derive(Debug, Template, WebTemplate)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    layout: Layout,
    stats: Stats,
    edges: Vec<EdgeLag>,
}

/// One event's payload.
#[derive(Debug, Serialize)]
struct Live {
    stats: Stats,
    edges: Vec<EdgeLag>,
}

pub async fn page(viewer: Viewer, State(state): State<PanelState>) -> PanelResult<DashboardPage> {
    Ok(DashboardPage {
        layout: Layout::new(&viewer, "Dashboard", "/"),
        stats: dashboard::stats(&state.pool).await?,
        edges: dashboard::edges(&state.pool).await?,
    })
}

pub async fn events(
    viewer: Viewer,
    State(state): State<PanelState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let every = Duration::from_secs(state.config.dashboard_refresh_secs);
    let id_hash = viewer.session.id_hash.clone();
    let ticks = stream::unfold(
        (state, id_hash, tokio::time::interval(every)),
        |(state, id_hash, mut interval)| async move {
            interval.tick().await;
            if !still_live(&state, &id_hash).await {
                return None;
            }
            let event = match snapshot(&state).await {
                Ok(live) => Event::default().event("stats").json_data(&live),
                Err(error) => {
                    tracing::warn!(%error, "dashboard statistics failed");
                    Ok(Event::default().comment("statistics unavailable"))
                }
            };
            let event = event.unwrap_or_else(|_| Event::default().comment("encoding failed"));
            Some((Ok(event), (state, id_hash, interval)))
        },
    );
    Sse::new(ticks).keep_alive(KeepAlive::default())
}

async fn snapshot(state: &PanelState) -> Result<Live, crate::error::DomainError> {
    Ok(Live {
        stats: dashboard::stats(&state.pool).await?,
        edges: dashboard::edges(&state.pool).await?,
    })
}
