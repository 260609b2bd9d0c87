//! A list's export from the panel runs as a task of this replica's: the
//! rows are written to a file of its own (mode 0600, in a directory of this
//! process's) with the job's progress, rows done of the total, and the
//! file is then downloaded from `/exports/{id}/file` by the admin who asked
//! for it. A small export is usually done before the answer goes out, and
//! the answer is then a redirect to the file itself; a large one's is the
//! job's page, `/exports/{id}`, with its bar until the download link.
//! Closing the browser does not stop one. The newest [`KEPT`] files are
//! kept; an older one is deleted. The directory goes with the process: it
//! is removed when the panel stops, and a replica starting removes those of
//! processes that are no longer running (killed, so never cleaned).

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path as FilePath, PathBuf};
use std::sync::{Arc, Mutex};

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::StreamExt;
use uuid::Uuid;

use super::error::{PanelError, PanelResult};
use super::pages::Layout;
use super::session::Viewer;
use super::tasks::{TaskList, WAIT_FOR_SMALL};
use crate::db::RowStream;
use crate::export::{self, Format, Record};
use crate::panel::PanelState;
use crate::tasks::TaskView;

/// Export files kept for download.
pub const KEPT: usize = 20;

/// The name of a panel's export directory, before its process id.
const DIR_PREFIX: &str = "latchkey-exports-";

/// This replica's export files, newest first, and where they are written.
#[derive(Debug, Clone)]
pub struct Exports {
    dir: Arc<ExportDir>,
    files: Arc<Mutex<VecDeque<ExportFile>>>,
}

/// This process's directory, removed with the last clone of [`Exports`].
#[derive(Debug)]
struct ExportDir(PathBuf);

impl Drop for ExportDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug, Clone)]
struct ExportFile {
    id: Uuid,
    /// Only the admin who asked downloads it.
    owner: Uuid,
    name: &'static str,
    format: Format,
    total: i64,
    /// Written whole; until then nothing is served.
    done: bool,
}

impl Exports {
    /// Files in a directory of this process's under `parent` (the system's
    /// temporary directory), made when the first export is; the
    /// directories there of processes gone are removed now.
    pub fn new(parent: &FilePath) -> Self {
        remove_abandoned(parent);
        Self {
            dir: Arc::new(ExportDir(
                // One per panel, not per process: tests run several at once.
                parent.join(format!(
                    "{DIR_PREFIX}{}-{}",
                    std::process::id(),
                    Uuid::new_v4().simple()
                )),
            )),
            files: Arc::default(),
        }
    }

    fn path(&self, id: Uuid) -> PathBuf {
        self.dir.0.join(id.simple().to_string())
    }

    fn find(&self, id: Uuid) -> Option<ExportFile> {
        let files = self.files.lock().expect("exports");
        files.iter().find(|f| f.id == id).cloned()
    }

    fn add(&self, file: ExportFile) {
        let evicted = {
            let mut files = self.files.lock().expect("exports");
            files.push_front(file);
            let kept = files.len().min(KEPT);
            files.split_off(kept)
        };
        for old in evicted {
            let _ = std::fs::remove_file(self.path(old.id));
        }
    }

    fn finish(&self, id: Uuid) {
        let mut files = self.files.lock().expect("exports");
        if let Some(file) = files.iter_mut().find(|f| f.id == id) {
            file.done = true;
        }
    }
}

/// Starts writing `rows` and answers with the file, if it is done within
/// [`WAIT_FOR_SMALL`], else with the job's page.
pub async fn start<R: Record>(
    viewer: &Viewer,
    state: &PanelState,
    rows: RowStream<R>,
    format: Format,
    total: i64,
) -> PanelResult<Response> {
    let exports = state.exports.clone();
    create_private_dir(&exports.dir.0).map_err(internal)?;
    let id = Uuid::new_v4();
    exports.add(ExportFile {
        id,
        owner: viewer.admin_id(),
        name: R::NAME,
        format,
        total,
        done: false,
    });
    let (done, finished) = tokio::sync::oneshot::channel();
    let path = exports.path(id);
    state.tasks.spawn(
        id,
        format!("Export of {} ({})", R::NAME, format.extension()),
        viewer.session.username.clone(),
        move |progress| async move {
            progress.stage("exporting", "rows", Some(total.max(0) as u64));
            let counted: RowStream<R> = Box::pin({
                let progress = progress.clone();
                rows.inspect(move |_| progress.advance(1))
            });
            let written = write(&path, Box::pin(export::encode(counted, format))).await;
            let outcome = match written {
                Ok(()) => {
                    exports.finish(id);
                    Ok(format!("{} rows", progress.view().done))
                }
                Err(error) => {
                    let _ = std::fs::remove_file(&path);
                    Err(format!("the export failed: {error}"))
                }
            };
            let _ = done.send(());
            outcome
        },
    );
    match tokio::time::timeout(WAIT_FOR_SMALL, finished).await {
        Ok(_) if state.exports.find(id).is_some_and(|f| f.done) => {
            Ok(Redirect::to(&format!("/exports/{id}/file")).into_response())
        }
        _ => Ok(Redirect::to(&format!("/exports/{id}")).into_response()),
    }
}

/// The directory, readable by this user only (the files are 0600 too).
fn create_private_dir(dir: &FilePath) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Removes the export directories under `parent` whose process is not
/// running: a replica killed never removed its own.
fn remove_abandoned(parent: &FilePath) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !FilePath::new(&format!("/proc/{pid}")).exists() {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::info!(dir = %entry.path().display(), "removed the export files of a process gone")
                }
                Err(error) => {
                    tracing::warn!(%error, dir = %entry.path().display(), "an abandoned export directory could not be removed")
                }
            }
        }
    }
}

/// Writes the chunks into a new private file.
async fn write(
    path: &FilePath,
    mut chunks: impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> + Unpin,
) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = std::io::BufWriter::new(options.open(path)?);
    while let Some(chunk) = chunks.next().await {
        file.write_all(&chunk?)?;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "export.html")]
pub struct ExportPage {
    layout: Layout,
    id: Uuid,
    file_name: String,
    /// The job: its bar while it runs, its outcome after.
    tasks: TaskList,
    task: Option<TaskView>,
    ready: bool,
}

/// The job's page: its bar, then the download link (or its failure).
pub async fn page(
    viewer: Viewer,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<ExportPage> {
    let file = owned(&viewer, &state, id)?;
    let task = state.tasks.get(id);
    Ok(ExportPage {
        layout: Layout::new(&viewer, "Export", ""),
        id,
        file_name: format!("{}.{}", file.name, file.format.extension()),
        tasks: TaskList(task.iter().filter(|t| t.running()).cloned().collect()),
        task,
        ready: file.done,
    })
}

/// The finished file, as the API's export answers it.
pub async fn file(
    viewer: Viewer,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<Response> {
    let file = owned(&viewer, &state, id)?;
    if !file.done {
        return Ok(Redirect::to(&format!("/exports/{id}")).into_response());
    }
    let opened = tokio::fs::File::open(state.exports.path(id))
        .await
        .map_err(|_| PanelError::NotFound)?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(opened));
    Ok(export::attachment(body, file.name, file.format, file.total))
}

/// The export, if it is this admin's.
fn owned(viewer: &Viewer, state: &PanelState, id: Uuid) -> PanelResult<ExportFile> {
    state
        .exports
        .find(id)
        .filter(|file| file.owner == viewer.admin_id())
        .ok_or(PanelError::NotFound)
}

fn internal(error: std::io::Error) -> PanelError {
    PanelError::Internal(format!("export directory: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_goes_with_the_panel_and_those_of_processes_gone_are_removed() {
        let parent = std::env::temp_dir().join(format!("exports-test-{}", Uuid::new_v4()));
        // No process has this id (above Linux's pid_max).
        let abandoned = parent.join(format!("{DIR_PREFIX}4194305-{}", Uuid::new_v4().simple()));
        let unrelated = parent.join("something-else");
        std::fs::create_dir_all(&abandoned).unwrap();
        std::fs::create_dir_all(&unrelated).unwrap();
        let exports = Exports::new(&parent);
        assert!(!abandoned.exists(), "a dead process's files are removed");
        assert!(unrelated.exists());

        create_private_dir(&exports.dir.0).unwrap();
        let ours = exports.dir.0.clone();
        let again = Exports::new(&parent);
        assert!(ours.exists(), "a running process's directory stays");
        drop(again);
        assert!(ours.exists(), "another panel's directory is its own");
        drop(exports);
        assert!(!ours.exists(), "removed with the panel");
        std::fs::remove_dir_all(parent).unwrap();
    }
}
