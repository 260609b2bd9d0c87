//! The import page: a file of customers, licenses, resources or leads
//! (CSV, or JSON but for leads) checked by a dry run that lists every
//! problem by line and column, then imported all or nothing, through the
//! same services as the admin API's imports.
//!
//! A check or an import runs as a task of this replica's
//! ([`Tasks`](crate::tasks::Tasks)): the form's post answers with a
//! redirect to `/import?task=<id>`, which shows the job's progress bar while
//! it runs and its outcome once done (the newest [`KEPT`] outcomes are
//! kept), so closing the browser does not stop an import.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::error::{PanelError, PanelResult};
use super::form::Form;
use super::pages::Layout;
use super::session::{AdminUser, Viewer};
use super::tasks::{TaskList, WAIT_FOR_SMALL};
use crate::context::RequestContext;
use crate::db::imports::{self, Format, Kind, MAX_IMPORT_LINES, Problem};
use crate::db::leads;
use crate::error::{DomainError, DomainResult};
use crate::panel::PanelState;
use crate::progress::Progress;

/// Finished checks and imports whose outcome the page can still show.
pub const KEPT: usize = 20;

/// This replica's finished checks and imports, newest first.
pub type Finished = Arc<Mutex<VecDeque<(Uuid, ImportForm, Result<Outcome, String>)>>>;

/// What can be imported: `(form value, label, columns)`.
const KINDS: [(&str, &str, &[&str]); 4] = [
    ("customers", "Customers", imports::CUSTOMER_COLUMNS),
    ("licenses", "Licenses", imports::LICENSE_COLUMNS),
    ("resources", "Resources", imports::RESOURCE_COLUMNS),
    ("leads", "Leads (CSV only)", &leads::IMPORT_COLUMNS),
];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ImportForm {
    pub kind: String,
    pub file: String,
    /// `check` (a dry run) or `import`.
    pub action: String,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "import.html")]
pub struct ImportPage {
    layout: Layout,
    form: ImportForm,
    kinds: Vec<(&'static str, &'static str, String)>,
    max_lines: usize,
    /// The job shown: its bar while it runs.
    tasks: TaskList,
    outcome: Option<Outcome>,
    /// The job failed (not a file's problem: the database, say).
    failure: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct TaskQuery {
    task: Option<Uuid>,
}

/// What a check or an import found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub applied: bool,
    pub dry_run: bool,
    pub lines: u64,
    /// `(what, how many)`.
    pub counts: Vec<(&'static str, u64)>,
    pub problems: Vec<Problem>,
}

/// The form, or with `?task=` a job's bar or outcome.
pub async fn page(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Query(query): Query<TaskQuery>,
) -> PanelResult<ImportPage> {
    let Some(task) = query.task else {
        return Ok(ImportPage::new(&admin, ImportForm::default()));
    };
    let finished = state
        .imports
        .lock()
        .expect("imports")
        .iter()
        .find(|(id, ..)| *id == task)
        .cloned();
    if let Some((_, form, outcome)) = finished {
        let mut page = ImportPage::new(&admin, form);
        match outcome {
            Ok(outcome) => page.outcome = Some(outcome),
            Err(failure) => page.failure = Some(failure),
        }
        return Ok(page);
    }
    let running = state.tasks.get(task).ok_or(PanelError::NotFound)?;
    let mut page = ImportPage::new(&admin, ImportForm::default());
    page.tasks = TaskList(vec![running]);
    Ok(page)
}

pub async fn submit(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(form): Form<ImportForm>,
) -> PanelResult<Response> {
    let dry_run = form.action != "import";
    // A JSON file is an array; anything else is read as CSV.
    let format = if form.file.trim_start().starts_with('[') {
        Format::Json
    } else {
        Format::Csv
    };
    let (kind, label) = match form.kind.as_str() {
        "customers" => (Some(Kind::Customers), "customers"),
        "licenses" => (Some(Kind::Licenses), "licenses"),
        "resources" => (Some(Kind::Resources), "resources"),
        "leads" if format == Format::Json => {
            return Err(PanelError::Invalid("leads: a CSV file".into()));
        }
        "leads" => (None, "leads"),
        _ => {
            return Err(PanelError::Invalid(
                "kind: choose what the file holds".into(),
            ));
        }
    };
    let task = Uuid::new_v4();
    let title = match dry_run {
        true => format!("Check of a file of {label}"),
        false => format!("Import of {label}"),
    };
    let (done, finished) = tokio::sync::oneshot::channel();
    let ctx = admin.ctx.clone();
    state.tasks.clone().spawn(
        task,
        title,
        admin.session.username.clone(),
        move |progress| async move {
            let job = Job {
                state: &state,
                ctx: &ctx,
                kind,
                format,
                text: &form.file,
                progress: &progress,
            };
            let outcome = job.run(dry_run).await.map_err(|error| error.to_string());
            let summary = match &outcome {
                Ok(outcome) => Ok(outcome.summary()),
                Err(error) => Err(error.clone()),
            };
            let mut kept = state.imports.lock().expect("imports");
            kept.push_front((task, form, outcome));
            kept.truncate(KEPT);
            drop(kept);
            let _ = done.send(());
            summary
        },
    );
    let _ = tokio::time::timeout(WAIT_FOR_SMALL, finished).await;
    Ok(Redirect::to(&format!("/import?task={task}")).into_response())
}

/// One check or import, as its task runs it.
struct Job<'a> {
    state: &'a PanelState,
    ctx: &'a RequestContext,
    /// `None` for leads.
    kind: Option<Kind>,
    format: Format,
    text: &'a str,
    progress: &'a Progress,
}

impl Job<'_> {
    async fn run(&self, dry_run: bool) -> DomainResult<Outcome> {
        match self.once(dry_run).await {
            // The apply refuses a file with problems: show them all, as the
            // dry run finds them.
            Err(DomainError::Invalid { .. } | DomainError::Refused { .. }) if !dry_run => {
                let mut checked = self.once(true).await?;
                checked.dry_run = false;
                Ok(checked)
            }
            other => other,
        }
    }

    async fn once(&self, dry_run: bool) -> DomainResult<Outcome> {
        let Self {
            state,
            ctx,
            format,
            text,
            progress,
            ..
        } = *self;
        let (pool, secrets) = (&state.pool, &state.secrets);
        match (self.kind, dry_run) {
            (Some(kind), true) => {
                imports::dry_run(pool, ctx, secrets, kind, format, text, progress)
                    .await
                    .map(Outcome::from)
            }
            (Some(kind), false) => imports::apply(pool, ctx, secrets, kind, format, text, progress)
                .await
                .map(Outcome::from),
            (None, true) => leads::dry_run_import(pool, ctx, text)
                .await
                .map(Outcome::from),
            (None, false) => leads::apply_import(pool, ctx, text)
                .await
                .map(Outcome::from),
        }
    }
}

impl Outcome {
    fn summary(&self) -> String {
        let what = match (self.applied, self.problems.len()) {
            (true, _) => "imported".to_owned(),
            (false, 0) => "checked, no problem".to_owned(),
            (false, n) => format!("{n} problem(s)"),
        };
        format!("{} line(s) {what}", self.lines)
    }
}

impl ImportPage {
    fn new(viewer: &Viewer, form: ImportForm) -> Self {
        Self {
            layout: Layout::new(viewer, "Import", "/import"),
            form,
            kinds: KINDS
                .iter()
                .map(|(value, label, columns)| (*value, *label, columns.join(", ")))
                .collect(),
            max_lines: MAX_IMPORT_LINES,
            tasks: TaskList(Vec::new()),
            outcome: None,
            failure: None,
        }
    }
}

impl From<imports::ImportReport> for Outcome {
    fn from(report: imports::ImportReport) -> Self {
        Self {
            applied: report.applied,
            dry_run: !report.applied,
            lines: report.lines,
            counts: vec![("created", report.created), ("unchanged", report.unchanged)],
            problems: report.problems,
        }
    }
}

impl From<leads::ImportReport> for Outcome {
    fn from(report: leads::ImportReport) -> Self {
        let summary = &report.summary;
        Self {
            applied: report.applied,
            dry_run: !report.applied,
            lines: summary.lines,
            counts: vec![
                ("institutions created", summary.institutions_created),
                ("institutions updated", summary.institutions_updated),
                ("institutions unchanged", summary.institutions_unchanged),
                ("contacts created", summary.contacts_created),
                ("contacts updated", summary.contacts_updated),
                ("e-mail addresses and phones added", summary.details_added),
            ],
            problems: report.problems,
        }
    }
}
