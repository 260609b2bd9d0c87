//! Licenses, with the keys the customers hold already:
//!
//! | column | holds |
//! |---|---|
//! | `key` | required: one of our keys, or any other system's (6 to 128 printable ASCII characters), imported as a legacy key that edges verify by its hash |
//! | `external_id` | the license's id in the other system, kept beside it |
//! | `product` | required: the product's slug |
//! | `customer_external_id`, `customer_email` | its customer: by a customers import's external id, or by e-mail address (the oldest customer with it) |
//! | `kind` | `full` (the default), `trial`, … as the API's |
//! | `status` | `active` (the default), `suspended` or `revoked` |
//! | `valid_from`, `valid_until` | RFC 3339, or a date (its midnight, UTC) |
//! | `device_limit`, `session_limit`, `grace_period_secs` | whole numbers |
//! | `allow_session_takeover` | `true` or `false` |
//! | `features` | separated by `;` |
//! | `metadata` | a JSON object |
//!
//! A key some license holds already is unchanged, whatever the rest of the
//! line says.

use latchkey_shared::snapshot::{LicenseKind, LicenseStatus};
use latchkey_shared::{LegacyKey, LicenseKey};
use sqlx::PgConnection;
use uuid::Uuid;

use super::source::Record;
use super::{Import, Problem, customers, external_id, object, parsed, timestamp};
use crate::context::RequestContext;
use crate::db::licenses::{self, NewLicense, StoredKey};
use crate::error::{DomainError, DomainResult};
use crate::secrets::Secrets;

pub const LICENSE_COLUMNS: &[&str] = &[
    "key",
    "external_id",
    "product",
    "customer_external_id",
    "customer_email",
    "kind",
    "status",
    "valid_from",
    "valid_until",
    "device_limit",
    "session_limit",
    "allow_session_takeover",
    "grace_period_secs",
    "features",
    "metadata",
];

pub struct Licenses;

pub struct Line {
    key: StoredKey,
    external_id: Option<String>,
    product: String,
    customer: Option<CustomerRef>,
    status: LicenseStatus,
    new: NewLicense,
}

enum CustomerRef {
    ExternalId(String),
    Email(String),
}

impl Import for Licenses {
    type Line = Line;
    const COLUMNS: &'static [&'static str] = LICENSE_COLUMNS;
    const REQUIRED: &'static [&'static str] = &["key", "product"];

    fn check(record: &Record, problems: &mut Vec<Problem>) -> Option<Line> {
        let key = parsed(
            record,
            "key",
            "one of our keys, or another system's of 6 to 128 printable ASCII characters",
            stored_key,
            problems,
        );
        let external = record
            .get("external_id")
            .map(|_| external_id(record, "external_id", problems).ok_or(()))
            .transpose();
        let customer = match (
            record.get("customer_external_id"),
            record.get("customer_email"),
        ) {
            (Some(_), Some(_)) => {
                problems.push(Problem::new(
                    record.line,
                    Some("customer_email"),
                    "name the customer once: by customer_external_id or customer_email",
                ));
                Err(())
            }
            (Some(id), None) => Ok(Some(CustomerRef::ExternalId(id.to_owned()))),
            (None, Some(email)) => Ok(Some(CustomerRef::Email(email.to_owned()))),
            (None, None) => Ok(None),
        };
        let kind = parsed(
            record,
            "kind",
            "a license kind",
            |t| LicenseKind::try_from(t.to_lowercase()).ok(),
            problems,
        );
        let status = parsed(
            record,
            "status",
            "active, suspended or revoked",
            |t| LicenseStatus::try_from(t.to_lowercase()).ok(),
            problems,
        );
        let valid_from = parsed(
            record,
            "valid_from",
            "RFC 3339 or a date",
            timestamp,
            problems,
        );
        let valid_until = parsed(
            record,
            "valid_until",
            "RFC 3339 or a date",
            timestamp,
            problems,
        );
        let number = |column: &str, problems: &mut Vec<Problem>| {
            parsed(
                record,
                column,
                "a whole number",
                |t| t.parse::<i32>().ok(),
                problems,
            )
        };
        let device_limit = number("device_limit", problems);
        let session_limit = number("session_limit", problems);
        let grace = number("grace_period_secs", problems);
        let takeover = parsed(
            record,
            "allow_session_takeover",
            "true or false",
            |t| t.to_lowercase().parse::<bool>().ok(),
            problems,
        );
        let metadata = parsed(record, "metadata", "a JSON object", object, problems);
        let features = record
            .get("features")
            .map(|list| {
                list.split(';')
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();

        let defaults = NewLicense::for_product(0);
        let new = NewLicense {
            kind: kind.ok()?.unwrap_or(defaults.kind),
            valid_from: valid_from.ok()?,
            valid_until: valid_until.ok()?,
            device_limit: device_limit.ok()?.unwrap_or(defaults.device_limit),
            session_limit: session_limit.ok()?.unwrap_or(defaults.session_limit),
            allow_session_takeover: takeover.ok()?.unwrap_or(defaults.allow_session_takeover),
            grace_period_secs: grace.ok()?,
            features,
            metadata: metadata.ok()?.unwrap_or(defaults.metadata),
            ..defaults
        };
        Some(Line {
            key: key.ok()??,
            external_id: external.ok()?,
            product: record.get("product")?.to_owned(),
            customer: customer.ok()?,
            status: status.ok()?.unwrap_or(LicenseStatus::Active),
            new,
        })
    }

    fn identity(line: &Line) -> (&'static str, String) {
        ("key", format!("{:?}", line.key.hash))
    }

    async fn write(
        conn: &mut PgConnection,
        ctx: &RequestContext,
        secrets: &Secrets,
        line: &Line,
    ) -> DomainResult<bool> {
        if licenses::key_exists(&mut *conn, &line.key).await? {
            return Ok(false);
        }
        let product_id: i32 = sqlx::query_scalar("SELECT id FROM products WHERE slug = $1")
            .bind(&line.product)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| {
                DomainError::invalid("product", format!("no product {:?}", line.product))
            })?;
        let customer = match &line.customer {
            None => None,
            Some(CustomerRef::ExternalId(id)) => {
                Some(customers::imported(&mut *conn, id).await?.ok_or_else(|| {
                    DomainError::invalid(
                        "customer_external_id",
                        format!("no customer was imported as {id:?}; import the customers first"),
                    )
                })?)
            }
            Some(CustomerRef::Email(email)) => Some(customer_by_email(&mut *conn, email).await?),
        };
        let new = NewLicense {
            product_id,
            ..line.new.clone()
        };
        let created = licenses::insert_in(
            &mut *conn,
            ctx,
            secrets,
            &new,
            std::slice::from_ref(&line.key),
            &[customer],
        )
        .await?;
        let license = &created
            .first()
            .ok_or_else(|| DomainError::Internal("the insert made no license".into()))?
            .license;
        if line.status != LicenseStatus::Active {
            licenses::set_status_in(&mut *conn, ctx, license, line.status).await?;
        }
        if let Some(external_id) = &line.external_id {
            sqlx::query("INSERT INTO license_import_ids (external_id, license_id) VALUES ($1, $2)")
                .bind(external_id)
                .bind(license.id)
                .execute(&mut *conn)
                .await
                .map_err(|error| match error.as_database_error() {
                    Some(db) if db.is_unique_violation() => DomainError::Conflict {
                        field: Some("external_id".into()),
                        message: format!("another license was imported as {external_id:?}"),
                    },
                    _ => DomainError::from(error),
                })?;
        }
        Ok(true)
    }
}

/// Ours when it parses as ours, else a legacy key.
fn stored_key(text: &str) -> Option<StoredKey> {
    match text.parse::<LicenseKey>() {
        Ok(key) => Some(StoredKey::from(&key)),
        Err(_) => LegacyKey::parse(text).ok().map(|key| StoredKey::from(&key)),
    }
}

async fn customer_by_email(conn: &mut PgConnection, email: &str) -> DomainResult<Uuid> {
    sqlx::query_scalar(
        "SELECT id FROM customers WHERE lower(email) = lower($1) ORDER BY created_at, id LIMIT 1",
    )
    .bind(email)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| DomainError::invalid("customer_email", format!("no customer has {email:?}")))
}
