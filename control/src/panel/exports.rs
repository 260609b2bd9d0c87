//! A list's export from the panel runs as a task of this replica's: the
//! rows are written to a file of its own (mode 0600, in a directory of this
//! process's) with the job's progress, rows done of the total, and the
//! file is then downloaded from `/exports/{id}/file` by the admin who asked
//! for it. A small export is usually done before the answer goes out, and
//! the answer is then a redirect to the file itself; a large one's is the
//! job's page, `/exports/{id}`, with its bar until the download link.
//! Closing the browser does not stop one. The newest [`KEPT`] files are
//! kept; an older one is deleted, and a restart forgets them all.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path as FilePath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
use super::tasks::TaskList;
use crate::db::RowStream;
use crate::export::{self, Format, Record};
use crate::panel::PanelState;
use crate::tasks::TaskView;

/// Export files kept for download.
pub const KEPT: usize = 20;
/// How long the answer waits for a small export, to send the file at once.
const WAIT_FOR_SMALL: Duration = Duration::from_millis(1_500);

/// This replica's export files, newest first, and where they are written.
#[derive(Debug, Clone)]
pub struct Exports {
    dir: PathBuf,
    files: Arc<Mutex<VecDeque<ExportFile>>>,
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
    /// Files under `dir`, made when the first export is.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            files: Arc::default(),
        }
    }

    fn path(&self, id: Uuid) -> PathBuf {
        self.dir.join(id.simple().to_string())
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
    std::fs::create_dir_all(&exports.dir).map_err(internal)?;
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
