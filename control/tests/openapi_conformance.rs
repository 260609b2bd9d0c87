//! The admin API's OpenAPI document against its server, by schemathesis
//! (PyPI `schemathesis`, v4; `deploy/local/test.sh` installs it): every
//! status answered is documented, every answer matches its schema and
//! content type, requests the schema allows are accepted and those it
//! forbids refused, and nothing answers 5xx. Without schemathesis this test
//! fails, saying so.

#[allow(dead_code)]
mod support;

use std::path::PathBuf;
use std::process::Stdio;

use axum::http::StatusCode;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::api::{Api, V1};
use tokio::process::Command;
use uuid::Uuid;

/// The run, as `schemathesis --config-file` reads it; `{product}`,
/// `{customer}` and `{admin}` are the seeded ids.
///
/// A schema cannot name the rows that exist, nor say "later than now" or
/// "after that other field": fields that must name the seeded product or
/// customer, a time to come, or the end of a window, are given one (the
/// document shows such values as examples, which the coverage phase takes);
/// every other field is generated.
const CONFIG: &str = r#"
seed = 20261201
# One worker: hypothesis parses source (`ast.parse`) while describing
# strategies, which CPython 3.11 can get wrong from two threads at once.
workers = 1
warnings.fail-on = ["unresolvable_reference", "unsupported_regex", "missing_auth", "validation_mismatch"]

[cache]
enabled = false

[generation]
# Enough to reach every operation's boundaries, few enough for well under
# a minute on a small machine.
max-examples = 15
database = "none"
# The document says once that no string may hold U+0000 (the server
# answers 400); JSON Schema cannot say it of every string.
allow-x00 = false

# Links from `Location` only: the inferred ones also carry a nullable id
# (a global flag's `product_id`) into a path, as `None`.
[phases.stateful]
inference.algorithms = ["location-headers"]

[checks]
enabled = false
not_a_server_error.enabled = true
status_code_conformance.enabled = true
content_type_conformance.enabled = true
response_schema_conformance.enabled = true
positive_data_acceptance.enabled = true
negative_data_rejection.enabled = true

# The coverage phase also tries the bounds of `product_id`, which name no
# product: the server rightly answers 400 naming the field. A window must
# end after it starts, which no schema says: it starts in the past.
[[operations]]
include-name = "POST /admin/api/v1/licenses"
parameters = { "body.product_id" = {product}, "body.customer_id" = "{customer}", "body.valid_from" = "2000-01-01T00:00:00Z", "body.valid_until" = "2998-01-01T00:00:00Z" }
phases.coverage.checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]

[[operations]]
include-name = "PATCH /admin/api/v1/licenses/{id}"
parameters = { "body.customer_id" = "{customer}", "body.valid_until" = "2998-01-01T00:00:00Z" }

[[operations]]
include-name = "POST /admin/api/v1/licenses/{id}/extend"
parameters = { "body.valid_until" = "2999-01-01T00:00:00Z" }

[[operations]]
include-name = "POST /admin/api/v1/flags"
parameters = { "body.product_id" = {product} }
phases.coverage.checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]

[[operations]]
include-name = "POST /admin/api/v1/api-keys"
parameters = { "body.expires_at" = "2999-01-01T00:00:00Z" }

[[operations]]
include-name = "POST /admin/api/v1/resources/{id}/quarantine"
parameters = { "body.until" = "2999-01-01T00:00:00Z" }

[[operations]]
include-name = "POST /admin/api/v1/resources/{id}/release"
parameters = { "body.quarantine_until" = "2999-01-01T00:00:00Z" }

[[operations]]
include-name = ["GET /admin/api/v1/audit", "GET /admin/api/v1/audit/export"]
parameters = { "query.from" = "2000-01-01T00:00:00Z", "query.to" = "2999-01-01T00:00:00Z" }

# An owner must be an admin; the coverage phase also tries other ids, which
# the server rightly answers with 400 naming `owner_id`.
[[operations]]
include-name = ["POST /admin/api/v1/leads/institutions", "PATCH /admin/api/v1/leads/institutions/{id}"]
parameters = { "body.owner_id" = "{admin}" }
phases.coverage.checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]

# A note above 20 000 characters is refused with 413, as a body above
# `max_body_bytes` is.
[[operations]]
include-name = ["POST /admin/api/v1/leads/institutions/{id}/notes", "POST /admin/api/v1/leads/contacts/{id}/notes", "PATCH /admin/api/v1/leads/notes/{id}"]
checks.negative_data_rejection.expected-statuses = ["400", "401", "403", "404", "409", "413", "415"]

# Any text is a CSV file to report on (the dry run answers its problems, the
# other imports' too),
# so no body breaks the schema; the apply refuses one with problems (400),
# which generated text nearly always has (the document's example imports).
[[operations]]
include-name = ["POST /admin/api/v1/leads/import/dry-run", "POST /admin/api/v1/leads/import", "POST /admin/api/v1/customers/import/dry-run", "POST /admin/api/v1/customers/import", "POST /admin/api/v1/licenses/import/dry-run", "POST /admin/api/v1/licenses/import", "POST /admin/api/v1/resources/import/dry-run", "POST /admin/api/v1/resources/import"]
checks.negative_data_rejection.enabled = false
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]
"#;

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_openapi_document_is_true_to_the_server(pool: PgPool) {
    let api = Api::new(pool).await;
    let (product, customer, admin) = seed(&api).await;
    let base = support::serve(api.state.clone()).await;

    // Its own directory: schemathesis keeps state in the one it runs in.
    let dir = std::env::temp_dir().join(format!("latchkey-schemathesis-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("schemathesis.toml");
    std::fs::write(
        &config,
        CONFIG
            .replace("{product}", &product.to_string())
            .replace("{customer}", customer.as_str().unwrap())
            .replace("{admin}", &admin.to_string()),
    )
    .unwrap();
    let output = Command::new("schemathesis")
        .arg("--config-file")
        .arg(&config)
        .args([
            "--no-color",
            "run",
            &format!("{base}{V1}/openapi.json"),
            "--header",
            &format!("Authorization: Bearer {}", api.admin),
        ])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .await;
    remove(dir);
    let output = output.unwrap_or_else(|error| {
        panic!(
            "cannot run schemathesis ({error}): install it with \
             `pip install 'schemathesis>=4.32,<5'` (deploy/local/test.sh does)"
        )
    });
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}"
    );
}

/// A product with a published release, a customer, a license, a flag, a
/// few resources, an admin and a lead institution with a contact, a phone
/// and a note, so that ids in the document exist; answers the product's,
/// the customer's and the admin's ids.
async fn seed(api: &Api) -> (i64, Value, Uuid) {
    let product = api.product("studio").await;
    let release = api
        .post(
            &format!("{V1}/products/{product}/releases"),
            json!({ "version": "1.2.0" }),
        )
        .await;
    let release = release.ok(StatusCode::CREATED)["id"].clone();
    api.post(
        &format!("{V1}/releases/{}/publish", release.as_str().unwrap()),
        json!({}),
    )
    .await
    .ok(StatusCode::OK);
    let customer = api
        .post(
            &format!("{V1}/customers"),
            json!({ "name": "Acme", "email": "ops@acme.example" }),
        )
        .await;
    let customer = customer.ok(StatusCode::CREATED)["id"].clone();
    api.post(
        &format!("{V1}/licenses"),
        json!({ "product_id": product, "customer_id": customer, "valid_until": "2100-01-01T00:00:00Z" }),
    )
    .await
    .ok(StatusCode::CREATED);
    api.post(&format!("{V1}/flags"), json!({ "key": "beta" }))
        .await
        .ok(StatusCode::CREATED);
    api.post(
        &format!("{V1}/resources"),
        json!({ "kind": "domain", "values": ["a.example.com", "b.example.com"] }),
    )
    .await
    .ok(StatusCode::CREATED);
    let admin = support::panel::admin(&api.pool, "anna", Role::Admin).await;
    let leads = format!("{V1}/leads");
    let school = api
        .post(
            &format!("{leads}/institutions"),
            json!({ "name": "Gymnasium Nord", "owner_id": admin, "tags": ["school"] }),
        )
        .await;
    let school = school.ok(StatusCode::CREATED)["id"].clone();
    let school = school.as_str().unwrap();
    let berta = api
        .post(
            &format!("{leads}/institutions/{school}/contacts"),
            json!({ "full_name": "Berta Klein" }),
        )
        .await;
    let berta = berta.ok(StatusCode::CREATED)["id"].clone();
    let berta = berta.as_str().unwrap();
    api.post(
        &format!("{leads}/contacts/{berta}/details"),
        json!({ "kind": "phone", "value": "+49 228 1234567" }),
    )
    .await
    .ok(StatusCode::CREATED);
    api.post(
        &format!("{leads}/institutions/{school}/notes"),
        json!({ "body": "Erstkontakt" }),
    )
    .await
    .ok(StatusCode::CREATED);
    (product, customer, admin)
}

fn remove(dir: PathBuf) {
    if let Err(error) = std::fs::remove_dir_all(&dir) {
        eprintln!("cannot remove {}: {error}", dir.display());
    }
}
