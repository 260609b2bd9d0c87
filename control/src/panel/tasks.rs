//! `/tasks/{id}/events`: a long job's progress as Server-Sent Events, a
//! `progress` event a second until a last `finished` one, which `app.js`
//! shows as the job's bar (rows done of the total, time left) and then
//! reloads the page for its outcome. The stream re-checks the session on
//! every tick, as the dashboard's does.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream;
use uuid::Uuid;

use super::error::{PanelError, PanelResult};
use super::session::{Viewer, still_live};
use crate::panel::PanelState;
use crate::tasks::TaskView;

const EVERY: Duration = Duration::from_secs(1);
/// How long a form's post waits for its job before answering: a small
/// job is then done, and the first page shown has its outcome (or file).
pub const WAIT_FOR_SMALL: Duration = Duration::from_millis(1_500);

/// The jobs a page lists (`tasks.html`), newest first.
#[derive(Debug, Clone)]
pub struct TaskList(pub Vec<TaskView>);

impl TaskList {
    pub fn running(&self) -> Vec<&TaskView> {
        self.0.iter().filter(|t| t.running()).collect()
    }

    pub fn finished(&self) -> Vec<&TaskView> {
        self.0.iter().filter(|t| !t.running()).collect()
    }
}

pub async fn events(
    viewer: Viewer,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    state.tasks.get(id).ok_or(PanelError::NotFound)?;
    let id_hash = viewer.session.id_hash.clone();
    let ticks = stream::unfold(
        (state, id_hash, tokio::time::interval(EVERY), false),
        move |(state, id_hash, mut interval, ended)| async move {
            if ended {
                return None;
            }
            interval.tick().await;
            if !still_live(&state, &id_hash).await {
                return None;
            }
            let task = state.tasks.get(id)?;
            let finished = !task.running();
            let event = Event::default()
                .event(if finished { "finished" } else { "progress" })
                .json_data(&task)
                .unwrap_or_else(|_| Event::default().comment("encoding failed"));
            Some((Ok(event), (state, id_hash, interval, finished)))
        },
    );
    Ok(Sse::new(ticks).keep_alive(KeepAlive::default()))
}
