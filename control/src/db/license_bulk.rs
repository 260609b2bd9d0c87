//! Bulk operations on licenses: suspend, resume, revoke, extend, set the
//! device limit, or delete a selection (ids) or everything a filter matches.
//!
//! Each runs in one transaction, license by license through the
//! single-license rules of `licenses` (`set_status_in`, `extend_in`,
//! `update_in`, `delete_in`), so each touched license has its own audit row
//! and outbox row, as if changed alone. A license the rule refuses, or that
//! is already as asked, is skipped and reported, not a reason to refuse the
//! rest: "suspend everything of product X" should not fail because one of
//! them was revoked last week. A license that should change but cannot
//! (an extension past the year 9999, a database error) fails the whole
//! operation: nothing changes. [`preview`] counts by the same rule
//! ([`Operation::skips`]) what [`apply`] will touch; `apply` locks the rows
//! and decides again, so a row changed in between is counted as it is then.

use std::collections::BTreeMap;

use latchkey_shared::snapshot::LicenseStatus;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::licenses::{self, License, LicenseFilter, LicensePatch};
use crate::context::RequestContext;
use crate::error::{DomainError, DomainResult};

/// Most licenses one operation may touch (or look at): a larger set is one
/// long transaction holding every row lock; narrow the filter instead.
/// Measured at a million licenses (debug build, shared machine): 10 000
/// took 15–19 s, too near the 30 s request timeout; 5 000 stays well inside.
pub const MAX_BULK: i64 = 5_000;
/// Longest extension at once.
pub const MAX_EXTEND_DAYS: u32 = 3_650;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Suspend,
    Resume,
    Revoke,
    ExtendDays(u32),
    SetDeviceLimit(i32),
    Delete,
}

/// Which licenses: those picked one by one, those a filter matches (at least
/// one condition), or every license, which must be asked for as such.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Ids(Vec<Uuid>),
    Matching(LicenseFilter),
    Everything,
}

/// What an operation did (or, from [`preview`], would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub touched: i64,
    /// Licenses left alone, by reason.
    pub skipped: BTreeMap<&'static str, i64>,
}

impl Outcome {
    pub fn skipped_total(&self) -> i64 {
        self.skipped.values().sum()
    }

    fn add(&mut self, skip: Option<&'static str>, count: i64) {
        match skip {
            None => self.touched += count,
            Some(reason) => *self.skipped.entry(reason).or_default() += count,
        }
    }
}

impl Operation {
    /// Checks the operation's own values (not any license's).
    pub fn validate(self) -> DomainResult<()> {
        match self {
            Self::ExtendDays(days) if !(1..=MAX_EXTEND_DAYS).contains(&days) => Err(
                DomainError::invalid("days", format!("must be between 1 and {MAX_EXTEND_DAYS}")),
            ),
            Self::SetDeviceLimit(limit) => LicensePatch {
                device_limit: Some(limit),
                ..LicensePatch::default()
            }
            .validate(),
            _ => Ok(()),
        }
    }

    /// Why a license in this state is left alone, or `None`: it is touched.
    /// The refusals are the single-license rules' ([`licenses::check_transition`],
    /// [`licenses::check_extension`]), which the change itself checks again.
    pub fn skips(
        self,
        status: LicenseStatus,
        valid_until: Option<OffsetDateTime>,
    ) -> Option<&'static str> {
        let target = match self {
            Self::Suspend => LicenseStatus::Suspended,
            Self::Resume => LicenseStatus::Active,
            Self::Revoke => LicenseStatus::Revoked,
            // N days later is always later: only "never expires" is refused.
            Self::ExtendDays(_) => {
                return valid_until
                    .is_none()
                    .then_some("perpetual: nothing to extend");
            }
            Self::SetDeviceLimit(_) | Self::Delete => return None,
        };
        if licenses::check_transition(status, target).is_err() {
            Some("revoked: a revoked license stays revoked")
        } else if status == target {
            Some(match target {
                LicenseStatus::Active => "already active",
                LicenseStatus::Suspended => "already suspended",
                LicenseStatus::Revoked => "already revoked",
            })
        } else {
            None
        }
    }
}

/// How many licenses `operation` would touch and skip, counted by state
/// (one grouped count, whatever the size).
pub async fn preview(
    pool: &PgPool,
    selection: &Selection,
    operation: Operation,
) -> DomainResult<Outcome> {
    operation.validate()?;
    #[derive(FromRow)]
    struct Group {
        #[sqlx(try_from = "String")]
        status: LicenseStatus,
        perpetual: bool,
        count: i64,
    }
    // Counted up to one more than an operation may touch: past that, the
    // answer is "too many" whatever the number (and a filter matching a
    // million licenses costs what one matching 10 001 does).
    let mut sql = QueryBuilder::<Postgres>::new(
        "SELECT status, valid_until IS NULL AS perpetual, count(*) AS count
           FROM (SELECT status, valid_until FROM licenses WHERE true",
    );
    push_selection(&mut sql, selection)?;
    sql.push(" LIMIT ")
        .push_bind(MAX_BULK + 1)
        .push(") picked GROUP BY 1, 2");
    let groups: Vec<Group> = sql.build_query_as().fetch_all(pool).await?;
    let mut outcome = Outcome::default();
    for group in groups {
        // Only whether there is an end matters to the rule, not when.
        let valid_until = (!group.perpetual).then_some(OffsetDateTime::UNIX_EPOCH);
        outcome.add(operation.skips(group.status, valid_until), group.count);
    }
    check_size(outcome.touched + outcome.skipped_total())?;
    Ok(outcome)
}

/// Runs `operation` on the selection in one transaction, and says what it did.
pub async fn apply(
    pool: &PgPool,
    ctx: &RequestContext,
    selection: &Selection,
    operation: Operation,
) -> DomainResult<Outcome> {
    operation.validate()?;
    let mut tx = pool.begin().await?;
    // Every row locked first, in id order (two bulk operations meet in the same order).
    let mut sql = QueryBuilder::<Postgres>::new(format!(
        "SELECT {} FROM licenses WHERE true",
        licenses::COLUMNS
    ));
    push_selection(&mut sql, selection)?;
    sql.push(" ORDER BY id LIMIT ")
        .push_bind(MAX_BULK + 1)
        .push(" FOR UPDATE");
    let locked: Vec<License> = sql.build_query_as().fetch_all(&mut *tx).await?;
    check_size(locked.len() as i64)?;
    let mut outcome = Outcome::default();
    for license in locked {
        let skip = operation.skips(license.status, license.valid_until);
        outcome.add(skip, 1);
        if skip.is_some() {
            continue;
        }
        match operation {
            Operation::Suspend => {
                licenses::set_status_in(&mut tx, ctx, &license, LicenseStatus::Suspended).await?;
            }
            Operation::Resume => {
                licenses::set_status_in(&mut tx, ctx, &license, LicenseStatus::Active).await?;
            }
            Operation::Revoke => {
                licenses::set_status_in(&mut tx, ctx, &license, LicenseStatus::Revoked).await?;
            }
            Operation::ExtendDays(days) => {
                // A license that cannot take the change fails the whole
                // operation (the transaction rolls back): unlike a skip,
                // it was meant to change.
                let until = license
                    .valid_until
                    .and_then(|v| v.checked_add(Duration::days(i64::from(days))))
                    .filter(|until| until.year() <= 9999)
                    .ok_or_else(|| {
                        DomainError::invalid(
                            "days",
                            format!(
                                "license {} would end after the year 9999: nothing was changed",
                                license.key_prefix
                            ),
                        )
                    })?;
                licenses::extend_in(&mut tx, ctx, &license, until).await?;
            }
            Operation::SetDeviceLimit(limit) => {
                let patch = LicensePatch {
                    device_limit: Some(limit),
                    ..LicensePatch::default()
                };
                licenses::update_in(&mut tx, ctx, &license, &patch).await?;
            }
            Operation::Delete => licenses::delete_in(&mut tx, ctx, license.id).await?,
        }
    }
    tx.commit().await?;
    Ok(outcome)
}

fn push_selection(sql: &mut QueryBuilder<'_, Postgres>, selection: &Selection) -> DomainResult<()> {
    match selection {
        Selection::Ids(ids) if ids.is_empty() => {
            return Err(DomainError::invalid(
                "selection",
                "select at least one license",
            ));
        }
        Selection::Ids(ids) => {
            sql.push(" AND id = ANY(").push_bind(ids.clone()).push(")");
        }
        Selection::Matching(filter) if filter.is_empty() => {
            return Err(DomainError::invalid(
                "selection",
                "a filter with no condition matches every license: choose “every license” to mean it",
            ));
        }
        Selection::Matching(filter) => filter.push(sql),
        Selection::Everything => {}
    }
    Ok(())
}

fn check_size(count: i64) -> DomainResult<()> {
    if count == 0 {
        return Err(DomainError::invalid("selection", "no license matches"));
    }
    if count > MAX_BULK {
        return Err(DomainError::invalid(
            "selection",
            format!("more than {MAX_BULK} licenses: at most {MAX_BULK} at once, narrow the filter"),
        ));
    }
    Ok(())
}
