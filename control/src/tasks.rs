//! This replica's long jobs started from the panel (backups, restores,
//! imports): each runs in a task of its own, so closing the browser stops
//! none of them, with its [`Progress`] for the panel's event stream, and
//! its outcome listed afterwards. The newest [`KEPT`] finished ones are
//! kept; a restart forgets them (what a backup made is in `backups`, what
//! an import wrote is in the audit log).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::progress::{Progress, ProgressView};

/// Finished tasks kept for the list.
pub const KEPT: usize = 50;

#[derive(Debug, Clone, Default)]
pub struct Tasks(Arc<Mutex<VecDeque<Task>>>);

#[derive(Debug, Clone)]
struct Task {
    id: Uuid,
    title: String,
    by: String,
    started_at: OffsetDateTime,
    progress: Progress,
    outcome: Option<(OffsetDateTime, Outcome)>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", content = "message", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded(String),
    Failed(String),
}

/// A task as the panel shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: Uuid,
    pub title: String,
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub progress: ProgressView,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub outcome: Option<Outcome>,
}

impl TaskView {
    pub fn running(&self) -> bool {
        self.outcome.is_none()
    }
}

impl Tasks {
    /// Runs `job` in a task of its own under `id`, handing it the progress
    /// to advance; its `Ok` is the outcome's summary, its `Err` the failure.
    pub fn spawn<F, Fut>(&self, id: Uuid, title: String, by: String, job: F) -> Progress
    where
        F: FnOnce(Progress) -> Fut,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        let progress = Progress::default();
        {
            let mut tasks = self.0.lock().expect("tasks");
            tasks.push_front(Task {
                id,
                title,
                by,
                started_at: OffsetDateTime::now_utc(),
                progress: progress.clone(),
                outcome: None,
            });
        }
        let running = job(progress.clone());
        let tasks = self.clone();
        tokio::spawn(async move {
            let outcome = match running.await {
                Ok(summary) => Outcome::Succeeded(summary),
                Err(error) => Outcome::Failed(error),
            };
            tasks.finish(id, outcome);
        });
        progress
    }

    fn finish(&self, id: Uuid, outcome: Outcome) {
        let mut tasks = self.0.lock().expect("tasks");
        if let Some(task) = tasks.iter_mut().find(|t| t.id == id) {
            task.outcome = Some((OffsetDateTime::now_utc(), outcome));
        }
        let mut finished = 0;
        tasks.retain(|task| {
            finished += usize::from(task.outcome.is_some());
            task.outcome.is_none() || finished <= KEPT
        });
    }

    /// Newest first.
    pub fn list(&self) -> Vec<TaskView> {
        let tasks = self.0.lock().expect("tasks");
        tasks.iter().map(Task::view).collect()
    }

    pub fn get(&self, id: Uuid) -> Option<TaskView> {
        let tasks = self.0.lock().expect("tasks");
        tasks.iter().find(|t| t.id == id).map(Task::view)
    }
}

impl Task {
    fn view(&self) -> TaskView {
        TaskView {
            id: self.id,
            title: self.title.clone(),
            by: self.by.clone(),
            started_at: self.started_at,
            progress: self.progress.view(),
            finished_at: self.outcome.as_ref().map(|(at, _)| *at),
            outcome: self.outcome.as_ref().map(|(_, outcome)| outcome.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_runs_on_and_its_outcome_is_listed() {
        let tasks = Tasks::default();
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let id = Uuid::new_v4();
        tasks.spawn(id, "Import".into(), "admin".into(), |progress| async move {
            progress.stage("importing", "lines", Some(4));
            progress.advance(1);
            wait.await.map_err(|e| e.to_string())?;
            progress.advance(3);
            Ok("4 lines".into())
        });
        tokio::task::yield_now().await;
        let running = tasks.get(id).unwrap();
        assert!(running.running());
        assert_eq!(running.progress.percent, Some(25));
        release.send(()).unwrap();
        for _ in 0..100 {
            if tasks.get(id).is_some_and(|t| !t.running()) {
                break;
            }
            tokio::task::yield_now().await;
        }
        let done = tasks.get(id).unwrap();
        assert!(matches!(done.outcome, Some(Outcome::Succeeded(ref s)) if s == "4 lines"));
        assert_eq!(done.progress.percent, Some(100));
    }

    #[tokio::test]
    async fn only_the_newest_finished_tasks_are_kept() {
        let tasks = Tasks::default();
        for n in 0..KEPT + 5 {
            let id = Uuid::from_u128(n as u128 + 1);
            tasks.spawn(id, format!("task {n}"), "admin".into(), |_| async {
                Err("failed".to_string())
            });
        }
        for _ in 0..1000 {
            if tasks.list().iter().all(|t| !t.running()) && tasks.list().len() == KEPT {
                break;
            }
            tokio::task::yield_now().await;
        }
        let listed = tasks.list();
        assert_eq!(listed.len(), KEPT);
        assert_eq!(listed[0].title, format!("task {}", KEPT + 4));
    }
}
