//! The import page: a file of customers, licenses, resources or leads
//! (CSV, or JSON but for leads) checked by a dry run that lists every
//! problem by line and column, then imported all or nothing, through the
//! same services as the admin API's imports.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use serde::Deserialize;

use super::error::{PanelError, PanelResult};
use super::form::Form;
use super::pages::Layout;
use super::session::{AdminUser, Viewer};
use crate::db::imports::{self, Format, Kind, MAX_IMPORT_LINES, Problem};
use crate::db::leads;
use crate::error::DomainError;
use crate::panel::PanelState;

/// What can be imported: `(form value, label, columns)`.
const KINDS: [(&str, &str, &[&str]); 4] = [
    ("customers", "Customers", imports::CUSTOMER_COLUMNS),
    ("licenses", "Licenses", imports::LICENSE_COLUMNS),
    ("resources", "Resources", imports::RESOURCE_COLUMNS),
    ("leads", "Leads (CSV only)", &leads::IMPORT_COLUMNS),
];

#[derive(Debug, Default, Deserialize)]
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
    outcome: Option<Outcome>,
}

/// What a check or an import found.
#[derive(Debug)]
pub struct Outcome {
    pub applied: bool,
    pub dry_run: bool,
    pub lines: u64,
    /// `(what, how many)`.
    pub counts: Vec<(&'static str, u64)>,
    pub problems: Vec<Problem>,
}

pub async fn page(AdminUser(admin): AdminUser) -> ImportPage {
    ImportPage::new(&admin, ImportForm::default(), None)
}

pub async fn submit(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(form): Form<ImportForm>,
) -> PanelResult<ImportPage> {
    let dry_run = form.action != "import";
    let text = form.file.as_str();
    // A JSON file is an array; anything else is read as CSV.
    let format = if text.trim_start().starts_with('[') {
        Format::Json
    } else {
        Format::Csv
    };
    let ctx = &admin.ctx;
    let pool = &state.pool;
    let secrets = &state.secrets;
    let kind = match form.kind.as_str() {
        "customers" => Some(Kind::Customers),
        "licenses" => Some(Kind::Licenses),
        "resources" => Some(Kind::Resources),
        "leads" => None,
        _ => {
            return Err(PanelError::Invalid(
                "kind: choose what the file holds".into(),
            ));
        }
    };
    let result = match (kind, dry_run) {
        (Some(kind), true) => imports::dry_run(pool, ctx, secrets, kind, format, text)
            .await
            .map(Outcome::from),
        (Some(kind), false) => imports::apply(pool, ctx, secrets, kind, format, text)
            .await
            .map(Outcome::from),
        (None, _) if format == Format::Json => {
            return Err(PanelError::Invalid("leads: a CSV file".into()));
        }
        (None, true) => leads::dry_run_import(pool, ctx, text)
            .await
            .map(Outcome::from),
        (None, false) => leads::apply_import(pool, ctx, text)
            .await
            .map(Outcome::from),
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        // The apply refuses a file with problems: show them all, as the
        // dry run finds them.
        Err(DomainError::Invalid { .. } | DomainError::Refused { .. }) if !dry_run => {
            let mut checked = match kind {
                Some(kind) => {
                    Outcome::from(imports::dry_run(pool, ctx, secrets, kind, format, text).await?)
                }
                None => Outcome::from(leads::dry_run_import(pool, ctx, text).await?),
            };
            checked.dry_run = false;
            checked
        }
        Err(error) => return Err(error.into()),
    };
    Ok(ImportPage::new(&admin, form, Some(outcome)))
}

impl ImportPage {
    fn new(viewer: &Viewer, form: ImportForm, outcome: Option<Outcome>) -> Self {
        Self {
            layout: Layout::new(viewer, "Import", "/import"),
            form,
            kinds: KINDS
                .iter()
                .map(|(value, label, columns)| (*value, *label, columns.join(", ")))
                .collect(),
            max_lines: MAX_IMPORT_LINES,
            outcome,
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
