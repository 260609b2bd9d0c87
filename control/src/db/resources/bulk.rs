//! Bulk adds, the one rule the admin API (a list of values) and the panel
//! (pasted lines, ranges allowed) share: every value canonicalised, a
//! report for every line (what it stood for, what was new, what was a
//! repeat within the input or already in the pool, what was malformed),
//! at most [`MAX_BULK_VALUES`] values in all, and nothing added when a
//! line is malformed unless the caller asked to add the valid ones.
//! Repeats and values already in the pool are skipped, not refused: they
//! are where the admin wanted them already.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;

use super::ranges;
use super::{MAX_BULK_VALUES, ResourceKind, truncate};
use crate::context::RequestContext;
use crate::db::audit::{self, Change};
use crate::error::{DomainError, DomainResult};

/// What a bulk add is given.
#[derive(Debug, Clone, Copy)]
pub enum BulkInput<'a> {
    /// One value each (the API): no ranges, a blank one is malformed.
    Values(&'a [String]),
    /// Text as pasted: one value or range a line, blank lines ignored.
    Pasted(&'a str),
}

/// What to do when a line is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBadLine {
    /// Add nothing: a typo never half-imports a list.
    AddNothing,
    /// Add the valid lines' values, report the others.
    AddTheValid,
}

/// One input line (or value) and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineReport {
    /// 1-based line of the paste, or 0-based index of the API's values.
    pub position: usize,
    /// The line as written, cut at 64 characters.
    pub text: String,
    /// Why it is malformed; nothing of it is added then.
    pub error: Option<String>,
    /// Values it stands for (1 unless a range).
    pub values: u64,
    /// Its values neither repeated nor already in the pool.
    pub new: u64,
    /// Values an earlier line already gave.
    pub repeated: u64,
    /// The earliest line that gave one of them first.
    pub repeat_of: Option<usize>,
    /// Values already in the pool.
    pub in_pool: u64,
    /// A few of them, to recognise.
    pub in_pool_examples: Vec<String>,
}

/// What a bulk add did, line by line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkReport {
    pub kind: ResourceKind,
    pub lines: Vec<LineReport>,
    /// Values put into the pool (0 when refused).
    pub added: u64,
    /// Repeats and values already in the pool (or added by someone else
    /// meanwhile) among the valid lines.
    pub skipped: u64,
    /// Malformed lines.
    pub invalid: u64,
    /// False: a malformed line refused the whole add, nothing was written.
    pub applied: bool,
}

impl BulkReport {
    /// The first malformed line, if any.
    pub fn first_invalid(&self) -> Option<&LineReport> {
        self.lines.iter().find(|line| line.error.is_some())
    }
}

const EXAMPLES: usize = 3;

/// Reads, checks and (unless refused) adds `input` to the `kind` pool in one
/// transaction with its history and one audit row. Empty input, or more than
/// [`MAX_BULK_VALUES`] values once ranges are expanded, is an `Invalid` on
/// `values`; a malformed line is reported in the answer, not an error.
pub async fn add_lines(
    pool: &PgPool,
    ctx: &RequestContext,
    kind: ResourceKind,
    input: BulkInput<'_>,
    on_bad_line: OnBadLine,
) -> DomainResult<BulkReport> {
    let parsed = parse(kind, input)?;
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    let mut unique: Vec<&str> = Vec::new();
    let mut lines = Vec::with_capacity(parsed.len());
    for (position, text, outcome) in &parsed {
        let mut line = LineReport {
            position: *position,
            text: truncate(text),
            error: None,
            values: 0,
            new: 0,
            repeated: 0,
            repeat_of: None,
            in_pool: 0,
            in_pool_examples: Vec::new(),
        };
        match outcome {
            Err(message) => line.error = Some(message.clone()),
            Ok(values) => {
                line.values = values.len() as u64;
                for value in values {
                    match first_seen.get(value.as_str()) {
                        Some(&earlier) => {
                            line.repeated += 1;
                            line.repeat_of =
                                Some(line.repeat_of.map_or(earlier, |e| e.min(earlier)));
                        }
                        None => {
                            first_seen.insert(value, *position);
                            unique.push(value);
                        }
                    }
                }
            }
        }
        lines.push(line);
    }

    let in_pool: HashSet<String> = sqlx::query_scalar(
        "SELECT value FROM resources WHERE kind = $1 AND value = ANY($2::text[])",
    )
    .bind(kind.as_str())
    .bind(&unique)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let mut fresh: Vec<&str> = Vec::new();
    for (line, (_, _, outcome)) in lines.iter_mut().zip(&parsed) {
        let Ok(values) = outcome else { continue };
        for value in values {
            if first_seen.get(value.as_str()) != Some(&line.position) {
                continue; // a repeat, counted above
            }
            if in_pool.contains(value) {
                line.in_pool += 1;
                if line.in_pool_examples.len() < EXAMPLES {
                    line.in_pool_examples.push(value.clone());
                }
            } else {
                line.new += 1;
                fresh.push(value);
            }
        }
    }
    let invalid = lines.iter().filter(|l| l.error.is_some()).count() as u64;
    let valid_values: u64 = lines.iter().map(|l| l.values).sum();
    let mut report = BulkReport {
        kind,
        lines,
        added: 0,
        skipped: 0,
        invalid,
        applied: false,
    };
    if invalid > 0 && on_bad_line == OnBadLine::AddNothing {
        return Ok(report);
    }
    report.applied = true;
    if fresh.is_empty() {
        // Nothing changes, so nothing is audited.
        report.skipped = valid_values;
        return Ok(report);
    }

    let mut tx = pool.begin().await?;
    // ON CONFLICT DO NOTHING: a value added by someone else since the check
    // above is skipped, not an error.
    let added: i64 = sqlx::query_scalar(
        "WITH inserted AS (
             INSERT INTO resources (kind, value)
             SELECT $1, v FROM UNNEST($2::text[]) WITH ORDINALITY AS t(v, n) ORDER BY n
             ON CONFLICT (kind, value) DO NOTHING
             RETURNING id
         ), history AS (
             INSERT INTO resource_history (resource_id, action) SELECT id, 'added' FROM inserted
         )
         SELECT count(*) FROM inserted",
    )
    .bind(kind.as_str())
    .bind(&fresh)
    .fetch_one(&mut *tx)
    .await?;
    report.added = added as u64;
    report.skipped = valid_values - report.added;
    let change = Change::new("resource.add_bulk", "resource", kind.as_str()).after(json!({
        "kind": kind.as_str(),
        "lines": report.lines.len(),
        "submitted": valid_values,
        "added": report.added,
        "skipped": report.skipped,
        "invalid_lines": report.invalid,
    }));
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(report)
}

type Parsed<'a> = Vec<(usize, &'a str, Result<Vec<String>, String>)>;

/// Every line with its values or its fault; refuses the call (field
/// `values`) when empty or over the cap, counting ranges expanded.
fn parse<'a>(kind: ResourceKind, input: BulkInput<'a>) -> DomainResult<Parsed<'a>> {
    let parsed: Parsed<'a> = match input {
        BulkInput::Values(values) => {
            if values.len() > MAX_BULK_VALUES {
                return Err(over_cap());
            }
            values
                .iter()
                .enumerate()
                .map(|(i, raw)| (i, raw.as_str(), kind.canonicalise(raw).map(|v| vec![v])))
                .collect()
        }
        BulkInput::Pasted(text) => {
            let mut parsed = Vec::new();
            let mut total = 0;
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let outcome = ranges::expand(kind, line);
                total += outcome.as_ref().map_or(0, Vec::len);
                if total > MAX_BULK_VALUES {
                    return Err(over_cap());
                }
                parsed.push((i + 1, line, outcome));
            }
            parsed
        }
    };
    if parsed.is_empty() {
        return Err(DomainError::invalid("values", "give at least one value"));
    }
    Ok(parsed)
}

fn over_cap() -> DomainError {
    DomainError::invalid(
        "values",
        format!(
            "one bulk add takes at most {MAX_BULK_VALUES} values, a range counting as \
             the values it holds: split the list"
        ),
    )
}

/// The API's add: a list of single values, all or nothing; the first
/// malformed one refuses the call naming `values[i]`.
pub async fn add_bulk(
    pool: &PgPool,
    ctx: &RequestContext,
    kind: ResourceKind,
    values: &[String],
) -> DomainResult<BulkAdded> {
    let report = add_lines(
        pool,
        ctx,
        kind,
        BulkInput::Values(values),
        OnBadLine::AddNothing,
    )
    .await?;
    if let Some(bad) = report.first_invalid() {
        let message = bad.error.clone().unwrap_or_default();
        return Err(DomainError::invalid(
            format!("values[{}]", bad.position),
            message,
        ));
    }
    Ok(BulkAdded {
        added: report.added,
        skipped: report.skipped,
    })
}

/// What the API's `add_bulk` did: every input value is either added or
/// skipped as a duplicate (within the input or already in the pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BulkAdded {
    pub added: u64,
    pub skipped: u64,
}
