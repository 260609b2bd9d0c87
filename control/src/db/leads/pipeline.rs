//! The pipeline as a board: how many institutions each stage holds, and
//! moving one institution to another stage (the panel's board).

use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::institutions::{self, COLUMNS, Institution, InstitutionFilter, STAGES, check_stage};
use crate::context::RequestContext;
use crate::db::audit::{self, Change, to_json};
use crate::error::DomainResult;

/// How many institutions matching `filter` each stage holds, in pipeline
/// order, zeros included; the filter's own stage is ignored.
pub async fn stage_counts(
    pool: &PgPool,
    filter: &InstitutionFilter,
) -> DomainResult<Vec<(&'static str, i64)>> {
    let filter = InstitutionFilter {
        stage: None,
        ..filter.clone()
    };
    let mut sql =
        QueryBuilder::<Postgres>::new("SELECT stage, count(*) FROM lead_institutions WHERE true");
    institutions::push_filter(&mut sql, &filter)?;
    sql.push(" GROUP BY stage");
    let counted: Vec<(String, i64)> = sql.build_query_as().fetch_all(pool).await?;
    Ok(STAGES
        .iter()
        .map(|&stage| {
            let n = counted
                .iter()
                .find(|(s, _)| s == stage)
                .map_or(0, |(_, n)| *n);
            (stage, n)
        })
        .collect())
}

/// Moves the institution to `stage`, audited; moving it where it is
/// changes nothing and writes no audit row. Only the stage is written, so a
/// move from a board opened earlier cannot undo another field's edit.
pub async fn set_stage(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    stage: &str,
) -> DomainResult<Institution> {
    let stage = check_stage(stage)?;
    let mut tx = pool.begin().await?;
    let before = institutions::lock(&mut tx, id).await?;
    if before.stage == stage {
        return Ok(before);
    }
    let after = sqlx::query_as::<_, Institution>(&format!(
        "UPDATE lead_institutions SET stage = $2, updated_at = now() WHERE id = $1
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(stage)
    .fetch_one(&mut *tx)
    .await?;
    let change = Change::new("lead.institution.stage", "lead_institution", id)
        .before(to_json(&before)?)
        .after(to_json(&after)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(after)
}
