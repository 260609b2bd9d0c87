//! `export` and `import`: the admin API's and the panel's exports and
//! imports from the command line, for scripts and for files too large to
//! upload comfortably, each with a progress bar on a terminal. The files
//! are the same: an export is written by [`crate::export`], an import read
//! by [`crate::db::imports`] and [`crate::db::leads`].

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use clap::ValueEnum;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use sqlx::PgPool;

use super::bar::with_bar;
use crate::context::RequestContext;
use crate::db::imports::{self, Kind, Problem};
use crate::db::{RowStream, audit, customers, devices, leads, licenses, resources, sessions};
use crate::export::{self, Format, Record};
use crate::progress::Progress;
use crate::secrets::Secrets;

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum List {
    Customers,
    Licenses,
    Devices,
    Sessions,
    Resources,
    Audit,
    /// The lead CRM's institutions.
    Leads,
}

/// What `import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportKind {
    Customers,
    Licenses,
    Resources,
    /// Institutions and their contacts (CSV only).
    Leads,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    Csv,
    Json,
}

/// Writes every row of `list` to `out`; the number of rows written.
pub async fn export(
    pool: &PgPool,
    list: List,
    format: FileFormat,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let format = match format {
        FileFormat::Csv => Format::Csv,
        FileFormat::Json => Format::Json,
    };
    let progress = Progress::new("exporting", "rows");
    let (total, mut chunks) = match list {
        List::Customers => (
            customers::count(pool, None).await?,
            encoded(customers::stream(pool.clone(), None)?, format, &progress),
        ),
        List::Licenses => {
            let filter = licenses::LicenseFilter::default();
            (
                licenses::count(pool, &filter).await?,
                encoded(licenses::stream(pool.clone(), &filter), format, &progress),
            )
        }
        List::Devices => {
            let filter = devices::DeviceFilter::default();
            (
                devices::count(pool, filter).await?,
                encoded(devices::stream(pool.clone(), filter), format, &progress),
            )
        }
        List::Sessions => (
            sessions::count(pool, false, None).await?,
            encoded(
                sessions::stream(pool.clone(), false, None),
                format,
                &progress,
            ),
        ),
        List::Resources => {
            let filter = resources::ResourceFilter::default();
            (
                resources::count(pool, &filter).await?,
                encoded(resources::stream(pool.clone(), &filter), format, &progress),
            )
        }
        List::Audit => {
            let filter = audit::AuditFilter::default();
            (
                audit::count(pool, &filter).await?,
                encoded(audit::stream(pool.clone(), &filter), format, &progress),
            )
        }
        List::Leads => {
            let filter = leads::InstitutionFilter::default();
            (
                leads::count_institutions(pool, &filter).await?,
                encoded(
                    leads::stream_institutions(pool.clone(), &filter)?,
                    format,
                    &progress,
                ),
            )
        }
    };
    progress.set_total(total.max(0) as u64);
    with_bar(&progress, async {
        while let Some(chunk) = chunks.next().await {
            out.write_all(&chunk.context("the export was cut short")?)?;
        }
        out.flush()?;
        Ok::<_, anyhow::Error>(())
    })
    .await?;
    Ok(progress.view().done)
}

/// The rows encoded, each one counted as done when it is read.
fn encoded<R: Record>(
    rows: RowStream<R>,
    format: Format,
    progress: &Progress,
) -> BoxStream<'static, std::io::Result<axum::body::Bytes>> {
    let progress = progress.clone();
    let counted: RowStream<R> = Box::pin(rows.inspect(move |_| progress.advance(1)));
    Box::pin(export::encode(counted, format))
}

/// Checks `file` (a dry run) or, with `apply`, imports it all or nothing;
/// prints the counts and every problem. A file with problems is an error
/// (the exit status says so to a script).
pub async fn import(
    pool: &PgPool,
    secrets: &Secrets,
    kind: ImportKind,
    file: &Path,
    apply: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    // A JSON file is an array; anything else is read as CSV, as the panel does.
    let format = match text.trim_start().starts_with('[') {
        true => imports::Format::Json,
        false => imports::Format::Csv,
    };
    let ctx = RequestContext::system("cli import");
    let progress = Progress::default();
    let kind = match kind {
        ImportKind::Customers => Kind::Customers,
        ImportKind::Licenses => Kind::Licenses,
        ImportKind::Resources => Kind::Resources,
        ImportKind::Leads => {
            if format == imports::Format::Json {
                bail!("leads are imported from a CSV file");
            }
            let report = match apply {
                true => leads::apply_import(pool, &ctx, &text).await,
                false => leads::dry_run_import(pool, &ctx, &text).await,
            };
            let report = match report {
                Ok(report) => report,
                Err(_) if apply => leads::dry_run_import(pool, &ctx, &text).await?,
                Err(error) => return Err(error.into()),
            };
            writeln!(out, "{}", serde_json::to_string(&report.summary)?)?;
            return outcome(report.applied, &report.problems, out);
        }
    };
    let run = |apply: bool| {
        let (text, ctx, progress) = (&text, &ctx, &progress);
        async move {
            match apply {
                true => imports::apply(pool, ctx, secrets, kind, format, text, progress).await,
                false => imports::dry_run(pool, ctx, secrets, kind, format, text, progress).await,
            }
        }
    };
    let report = match with_bar(&progress, run(apply)).await {
        Ok(report) => report,
        // The apply refuses a file with problems: list them all.
        Err(_) if apply => with_bar(&progress, run(false)).await?,
        Err(error) => return Err(error.into()),
    };
    writeln!(
        out,
        "{} line(s): {} created, {} unchanged{}",
        report.lines,
        report.created,
        report.unchanged,
        if report.applied {
            ""
        } else {
            " (a dry run: nothing written; --apply writes)"
        }
    )?;
    outcome(report.applied, &report.problems, out)
}

fn outcome(applied: bool, problems: &[Problem], out: &mut dyn Write) -> anyhow::Result<()> {
    for problem in problems {
        let column = problem
            .field
            .as_deref()
            .map(|field| format!(", column {field}"))
            .unwrap_or_default();
        writeln!(out, "line {}{column}: {}", problem.line, problem.message)?;
    }
    match (applied, problems.len()) {
        (true, _) | (false, 0) => Ok(()),
        (false, n) => bail!("{n} problem(s): nothing was imported"),
    }
}
