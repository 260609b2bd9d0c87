//! The audit log: one row per mutation, written in the mutation's transaction.

use serde_json::Value;
use sqlx::PgConnection;

use crate::context::RequestContext;

/// What changed: `action` like `license.suspend`, the entity, and its state
/// before and after (`None` where it did not exist).
#[derive(Debug)]
pub struct Change<'a> {
    pub action: &'a str,
    pub entity_kind: &'a str,
    pub entity_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

pub async fn record(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    change: Change<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (request_id, actor_kind, actor_id, actor_name, action, entity_kind, entity_id,
                                before, after, ip, user_agent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::inet, $11)",
    )
    .bind(&ctx.request_id)
    .bind(ctx.actor.kind.as_str())
    .bind(&ctx.actor.id)
    .bind(&ctx.actor.name)
    .bind(change.action)
    .bind(change.entity_kind)
    .bind(change.entity_id)
    .bind(change.before)
    .bind(change.after)
    .bind(ctx.ip.map(|ip| ip.to_string()))
    .bind(&ctx.user_agent)
    .execute(conn)
    .await?;
    Ok(())
}
