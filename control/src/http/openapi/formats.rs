//! What the Rust types cannot tell the document about requests: the format
//! of each string (pattern, length in characters), the bounds of numbers,
//! the choices of a text and which values must be objects.
//!
//! Each rule is the server's own check (in `db`, or in `http` for what only
//! it reads) written as JSON Schema, for request types wherever they live;
//! `tests/openapi_conformance.rs` holds the two to each other. A schema or
//! property named here that the document lacks panics when the document is
//! built, so a rename cannot drop a rule unseen.

use latchkey_shared::snapshot::{LicenseKind, LicenseStatus};
use serde_json::Value;
use utoipa::openapi::schema::{
    AdditionalProperties, Array, ArrayItems, Object, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{OpenApi as Document, RefOr};

use crate::db::api_keys::{Area, Scope};
use crate::db::customers::{
    COMPANY_MAX_CHARS, EMAIL_MAX_CHARS, NAME_MAX_CHARS, NOTES_MAX_CHARS, QUERY_MAX_CHARS,
};
use crate::db::leads::{self, DetailKind, NOTE_MAX_CHARS, STAGES, TAGS_MAX};
use crate::db::licenses::{
    MAX_BATCH, MAX_DEVICE_LIMIT, MAX_SEAT_CHANGE_LIMIT, MAX_SEAT_CHANGE_WINDOW_SECS,
    MIN_SEAT_CHANGE_WINDOW_SECS,
};
use crate::db::resources::{MAX_ALLOCATION, MAX_BULK_VALUES, ResourceKind};
use crate::db::settings::EDGE_CONFIG_BOUNDS;
use crate::http::API_PREFIX;
use crate::http::audit::MAX_FILTER_CHARS;
use crate::http::leads::notes::SEARCH_MAX_LIMIT;
use crate::http::licenses::KEY_PREFIX_MAX_CHARS;
use crate::http::products::VERSION_MAX_CHARS;

/// What Rust's `char::is_whitespace` (and so `str::trim`) counts as white space.
const WHITE_SPACE: &str =
    r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// What Rust's `char::is_control` counts as a control character.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";
/// A semver number: no leading zero, and few enough digits for a `u64`.
const NUMBER: &str = "(?:0|[1-9][0-9]{0,18})";
const PRERELEASE_PART: &str = "(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)";
const BUILD_PART: &str = "[0-9A-Za-z-]+";
const DOMAIN_LABEL: &str = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
/// Separators a phone number may carry; they are dropped when it is stored.
const PHONE_SEPARATORS: &str = r"[ \t().-]*";
/// Those a lead's phone may carry (`db::leads::normalise_phone`).
const LEAD_PHONE_SEPARATORS: &str = r"[ ().-]*";

/// Times for examples: one long gone, and two to come, the second later
/// (a license made to end at the first can be extended to the second).
const PAST: &str = "2000-01-01T00:00:00Z";
const SOONER: &str = "2998-01-01T00:00:00Z";
const FUTURE: &str = "2999-01-01T00:00:00Z";

/// One rule for one value.
#[derive(Debug, Clone)]
enum Rule {
    Text {
        pattern: Option<String>,
        min: usize,
        max: usize,
    },
    Integer {
        min: i64,
        max: u64,
    },
    /// A text out of these.
    Choice(Vec<String>),
    /// An array of `min` to `max` items, each under `items`.
    List {
        items: Box<Rule>,
        min: usize,
        max: Option<usize>,
    },
    /// An object whose property names follow the first rule and whose
    /// values follow the second.
    Map(Box<Rule>, Box<Rule>),
    /// A JSON object, not any JSON value (or `null`, when that leaves it alone).
    Object {
        nullable: bool,
    },
    /// A value to show, and to try first: for what must name a row or a
    /// time to come, which no schema can say.
    Example(Value),
}

/// Applies the rules to the document's request schemas and parameters.
pub fn apply(document: &mut Document) {
    for (path, name, rule) in parameter_rules() {
        let item = document
            .paths
            .paths
            .get_mut(&format!("{API_PREFIX}{path}"))
            .unwrap_or_else(|| panic!("no path {path} to refine"));
        let mut found = false;
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            for parameter in operation.parameters.iter_mut().flatten() {
                if let RefOr::T(parameter) = parameter
                    && parameter.name == name
                    && let Some(RefOr::T(schema)) = &mut parameter.schema
                {
                    rule.refine(schema);
                    found = true;
                }
            }
        }
        assert!(found, "no parameter {name} of {path} to refine");
    }
    let schemas = &mut document
        .components
        .as_mut()
        .expect("the document has components")
        .schemas;
    for (schema, property, rule) in body_rules() {
        let target = match schemas.get_mut(schema) {
            Some(RefOr::T(Schema::Object(object))) => object.properties.get_mut(property),
            _ => panic!("no schema {schema} to refine"),
        };
        match target {
            Some(RefOr::T(value)) => rule.refine(value),
            _ => panic!("no property {schema}.{property} to refine"),
        }
    }
}

/// The rules of query and path parameters, by path and name.
fn parameter_rules() -> Vec<(&'static str, &'static str, Rule)> {
    let mut rules = Vec::new();
    // A list's export takes the list's filters, by the same rules.
    for path in ["/licenses", "/licenses/export"] {
        rules.extend([
            (path, "status", choice(license_statuses())),
            (path, "key_prefix", up_to(KEY_PREFIX_MAX_CHARS)),
        ]);
    }
    for path in ["/customers", "/customers/export"] {
        rules.push((path, "q", up_to(QUERY_MAX_CHARS)));
    }
    rules.extend([
        ("/products/{slug}/version-check", "slug", slug()),
        ("/products/{slug}/version-check", "version", version()),
        ("/products/{slug}/version-check", "channel", channel()),
    ]);
    for path in ["/leads/institutions", "/leads/institutions/export"] {
        rules.extend([
            (path, "stage", stages()),
            (path, "tag", name(64)),
            (path, "q", up_to(leads::QUERY_MAX_CHARS)),
        ]);
    }
    rules.extend([
        ("/leads/search", "q", name(leads::QUERY_MAX_CHARS)),
        (
            "/leads/search",
            "limit",
            integer(1, u64::from(SEARCH_MAX_LIMIT)),
        ),
        (
            "/leads/notes/{id}",
            "base_version",
            integer(1, i32::MAX as u64),
        ),
    ]);
    for path in ["/audit", "/audit/export"] {
        rules.extend([(path, "from", example(PAST)), (path, "to", example(FUTURE))]);
        for name in [
            "actor_id",
            "action",
            "entity_kind",
            "entity_id",
            "request_id",
        ] {
            rules.push((
                path,
                name,
                Rule::Text {
                    pattern: None,
                    min: 1,
                    max: MAX_FILTER_CHARS,
                },
            ));
        }
    }
    rules
}

/// The rules of the request bodies, by schema and property.
fn body_rules() -> Vec<(&'static str, &'static str, Rule)> {
    let mut rules = vec![
        ("CreateApiKey", "name", name(128)),
        ("CreateApiKey", "scopes", scopes()),
        ("NewProduct", "slug", slug()),
        ("NewProduct", "name", name(256)),
        ("NewProduct", "description", up_to(4096)),
        ("ProductUpdate", "name", name(256)),
        ("ProductUpdate", "description", up_to(4096)),
        ("NewRelease", "version", version()),
        ("NewRelease", "channel", channel()),
        ("NewRelease", "download_url", url()),
        ("NewRelease", "notes", up_to(16_384)),
        ("NewFlag", "key", flag_key()),
        ("NewFlag", "rollout_percent", integer(0, 100)),
        ("NewFlag", "description", up_to(4096)),
        ("FlagUpdate", "rollout_percent", integer(0, 100)),
        ("FlagUpdate", "description", up_to(4096)),
        (
            "AllocateResources",
            "count",
            integer(1, u64::from(MAX_ALLOCATION)),
        ),
        ("CreateApiKey", "expires_at", example(FUTURE)),
        ("NewFlag", "product_id", Rule::Example(1.into())),
        ("ExtendLicense", "valid_until", example(FUTURE)),
        ("QuarantineResource", "until", example(FUTURE)),
        ("ReleaseResource", "quarantine_until", example(FUTURE)),
        ("CreateLicenses", "product_id", Rule::Example(1.into())),
    ];
    for (field, min, max) in EDGE_CONFIG_BOUNDS {
        rules.push((
            "EdgeSettings",
            field,
            integer(i64::from(min), u64::from(max)),
        ));
    }
    rules.extend([
        (
            "ClientConfig",
            "heartbeat_interval_secs",
            integer(10, 86_400),
        ),
        ("ClientConfig", "grace_period_secs", integer(0, 90 * 86_400)),
        ("ClientConfig", "features", features()),
        ("ClientConfig", "settings", Rule::Object { nullable: false }),
    ]);
    for schema in ["NewInstitution", "InstitutionPatch"] {
        rules.extend([
            (schema, "name", name(256)),
            (schema, "kind", up_to(64)),
            (schema, "website", website()),
            (schema, "country", up_to(64)),
            (schema, "city", up_to(128)),
            (schema, "address", up_to(512)),
            (schema, "stage", stages()),
            (
                schema,
                "tags",
                Rule::List {
                    items: Box::new(name(64)),
                    min: 0,
                    max: Some(TAGS_MAX),
                },
            ),
            (schema, "extra", Rule::Object { nullable: true }),
            (schema, "owner_id", Rule::Example(Value::Null)),
        ]);
    }
    for schema in ["NewContact", "ContactPatch"] {
        rules.extend([
            (schema, "full_name", name(256)),
            (schema, "title", up_to(128)),
        ]);
    }
    rules.extend([
        ("NewNote", "body", name(NOTE_MAX_CHARS)),
        ("NoteEdit", "body", name(NOTE_MAX_CHARS)),
        ("NoteEdit", "base_version", integer(1, i32::MAX as u64)),
        ("ConvertInstitution", "name", name(NAME_MAX_CHARS)),
        ("ConvertInstitution", "email", email()),
        ("ConvertInstitution", "company", up_to(COMPANY_MAX_CHARS)),
        ("ConvertInstitution", "notes", up_to(NOTES_MAX_CHARS)),
        (
            "ConvertInstitution",
            "metadata",
            Rule::Object { nullable: true },
        ),
    ]);
    for schema in ["CreateCustomer", "UpdateCustomer"] {
        rules.extend([
            (schema, "name", name(NAME_MAX_CHARS)),
            (schema, "email", email()),
            (schema, "company", up_to(COMPANY_MAX_CHARS)),
            (schema, "notes", up_to(NOTES_MAX_CHARS)),
        ]);
    }
    for (schema, nullable) in [("CreateLicenses", false), ("LicensePatch", true)] {
        rules.extend([
            (schema, "kind", choice(license_kinds())),
            (schema, "device_limit", integer(0, MAX_DEVICE_LIMIT as u64)),
            (schema, "session_limit", integer(0, u64::from(u16::MAX))),
            (schema, "grace_period_secs", integer(0, 365 * 86_400)),
            (
                schema,
                "seat_change_limit",
                integer(0, MAX_SEAT_CHANGE_LIMIT as u64),
            ),
            (
                schema,
                "seat_change_window_secs",
                integer(
                    i64::from(MIN_SEAT_CHANGE_WINDOW_SECS),
                    MAX_SEAT_CHANGE_WINDOW_SECS as u64,
                ),
            ),
            (schema, "features", features()),
            (
                schema,
                "usage_limits",
                Rule::Map(
                    Box::new(text("^[a-z0-9_]{1,64}$", 1, 64)),
                    Box::new(integer(0, u64::MAX)),
                ),
            ),
            (schema, "metadata", Rule::Object { nullable }),
            (schema, "customer_id", Rule::Example(Value::Null)),
            (schema, "valid_until", example(SOONER)),
        ]);
    }
    rules
}

/// The body of `POST /licenses`: the fields of a new license, and how many.
pub fn create_licenses(mut new_license: Object) -> Object {
    new_license.description =
        Some("A new license, and how many alike to make (a batch sharing a `batch_id`).".into());
    new_license.properties.insert(
        "count".into(),
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
            .minimum(Some(1))
            .maximum(Some(MAX_BATCH as u64))
            .description(Some("1 (the default) to 10000."))
            .into(),
    );
    new_license
}

/// The body of `POST /resources`: one kind, and 1 to 65536 values of it.
pub fn add_resources() -> Schema {
    let mut kinds = OneOfBuilder::new();
    for kind in ResourceKind::ALL {
        let value = match kind {
            ResourceKind::Domain => text(
                &format!(r"^(?:{DOMAIN_LABEL}\.)+[A-Za-z](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.?$"),
                3,
                253,
            )
            .schema(),
            ResourceKind::Ip => OneOfBuilder::new()
                .item(string().format(Some(SchemaFormat::Custom("ipv4".into()))))
                .item(string().format(Some(SchemaFormat::Custom("ipv6".into()))))
                .into(),
            ResourceKind::Phone => {
                let s = PHONE_SEPARATORS;
                text(&format!(r"^{s}\+{s}[1-9](?:{s}[0-9]){{7,14}}{s}$"), 9, 256).schema()
            }
        };
        let mut values = Array::new(value);
        values.min_items = Some(1);
        values.max_items = Some(MAX_BULK_VALUES);
        kinds = kinds.item(
            ObjectBuilder::new()
                .property("kind", choice(vec![kind.as_str().to_owned()]).schema())
                .property("values", Schema::Array(values))
                .required("kind")
                .required("values")
                .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false))),
        );
    }
    kinds
        .description(Some(
            "Values are stored canonical (lower-case domains, canonical IP text, E.164 \
             numbers); values already in the pool, or repeated, are skipped.",
        ))
        .into()
}

/// The body of `POST /leads/contacts/{id}/details`: a phone or an e-mail
/// address, as its `kind` says.
pub fn new_detail() -> Schema {
    let mut kinds = OneOfBuilder::new();
    for kind in DetailKind::ALL {
        kinds = kinds.item(
            detail_object(Some(kind))
                .property(
                    "is_primary",
                    ObjectBuilder::new().schema_type(Type::Boolean),
                )
                .required("kind")
                .required("value"),
        );
    }
    kinds.description(Some(DETAIL_VALUES)).into()
}

/// The body of `PATCH /leads/details/{id}`: a new `kind` and `value`
/// together, or neither; `label` and `is_primary` either way.
pub fn detail_patch() -> Schema {
    let is_primary =
        || ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::Boolean, Type::Null]));
    let mut kinds = OneOfBuilder::new();
    for kind in DetailKind::ALL {
        kinds = kinds.item(
            detail_object(Some(kind))
                .property("is_primary", is_primary())
                .required("kind")
                .required("value"),
        );
    }
    kinds
        .item(detail_object(None).property("is_primary", is_primary()))
        .description(Some(DETAIL_VALUES))
        .into()
}

const DETAIL_VALUES: &str = "A phone is stored as E.164 (spaces, dashes, dots and parentheses dropped), \
                             an e-mail address with its domain lower-case.";

/// A detail's `kind`, `value` and `label`: of one kind, or (`None`) with
/// neither kind nor value.
fn detail_object(kind: Option<DetailKind>) -> ObjectBuilder {
    let null = || ObjectBuilder::new().schema_type(Type::Null);
    let (kind_schema, value): (Schema, Schema) = match kind {
        None => (null().into(), null().into()),
        Some(kind) => {
            let value = match kind {
                DetailKind::Phone => {
                    let s = LEAD_PHONE_SEPARATORS;
                    string()
                        .pattern(Some(format!(r"^{s}\+{s}[1-9](?:{s}[0-9]){{6,14}}{s}$")))
                        .min_length(Some(8))
                        .into()
                }
                DetailKind::Email => email().schema(),
            };
            (choice(vec![kind.as_str().to_owned()]).schema(), value)
        }
    };
    let mut label = Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .build(),
    );
    up_to(64).refine(&mut label);
    ObjectBuilder::new()
        .property("kind", kind_schema)
        .property("value", value)
        .property("label", label)
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
}

/// Text with at least one character that is not white space: names are
/// stored trimmed, and must not be empty then.
fn name(max: usize) -> Rule {
    text(&format!("[^{WHITE_SPACE}]"), 1, max)
}

fn up_to(max: usize) -> Rule {
    Rule::Text {
        pattern: None,
        min: 0,
        max,
    }
}

fn stages() -> Rule {
    choice(STAGES.map(str::to_owned).to_vec())
}

/// What `db::leads` stores as a website: empty (none), or `http(s)://`, a
/// host with a dot, and a path, query or fragment, without white space;
/// white space around it is trimmed.
fn website() -> Rule {
    let host = format!("[^/?#{WHITE_SPACE}]");
    text(
        &format!(
            "^[{WHITE_SPACE}]*(?:https?://{host}*\\.{host}*(?:[/?#][^{WHITE_SPACE}]*)?)?[{WHITE_SPACE}]*$"
        ),
        0,
        512,
    )
}

fn slug() -> Rule {
    text("^[a-z0-9][a-z0-9-]{0,62}$", 1, 63)
}

fn channel() -> Rule {
    text("^[a-z0-9-]{1,32}$", 1, 32)
}

fn flag_key() -> Rule {
    text("^[a-z0-9][a-z0-9_.-]{0,63}$", 1, 64)
}

/// A version as applications report it: a leading `v` and missing minor
/// or patch numbers are allowed, the rest is semver.
fn version() -> Rule {
    let core = format!(r"{NUMBER}(?:\.{NUMBER}){{0,2}}");
    let prerelease = format!(r"(?:-{PRERELEASE_PART}(?:\.{PRERELEASE_PART})*)?");
    let build = format!(r"(?:\+{BUILD_PART}(?:\.{BUILD_PART})*)?");
    text(
        &format!("^[vV]?{core}{prerelease}{build}$"),
        1,
        VERSION_MAX_CHARS,
    )
}

/// An http(s) URL of printable ASCII.
fn url() -> Rule {
    text("^https?://[!-~]*$", 7, 2048)
}

/// One `@`, 1 to 64 characters before it, a dotted domain after it whose
/// labels neither start nor end with `-`; no white space or control
/// character anywhere.
fn email() -> Rule {
    let any = format!("[^@{WHITE_SPACE}{CONTROL}]");
    let label_char = format!("[^@.{WHITE_SPACE}{CONTROL}]");
    let label_edge = format!("[^@.{WHITE_SPACE}{CONTROL}-]");
    let label = format!("{label_edge}(?:{label_char}*{label_edge})?");
    text(
        &format!(r"^{any}{{1,64}}@{label}(?:\.{label})+$"),
        3,
        EMAIL_MAX_CHARS,
    )
}

/// At least one of `*`, `<area>:read` and `<area>:write`.
fn scopes() -> Rule {
    let mut all = vec![Scope::All.to_string()];
    for area in Area::ALL {
        all.push(Scope::read(area).to_string());
        all.push(Scope::write(area).to_string());
    }
    Rule::List {
        items: Box::new(choice(all)),
        min: 1,
        max: None,
    }
}

fn license_statuses() -> Vec<String> {
    (0..)
        .map_while(LicenseStatus::from_u8)
        .map(|status| status.as_str().to_owned())
        .collect()
}

fn license_kinds() -> Vec<String> {
    (0..)
        .map_while(LicenseKind::from_u8)
        .map(|kind| kind.as_str().to_owned())
        .collect()
}

/// A license's or a product's feature names (`licenses::check_features`).
fn features() -> Rule {
    Rule::List {
        items: Box::new(text("^[a-z0-9_.-]{1,64}$", 1, 64)),
        min: 0,
        max: Some(64),
    }
}

fn example(text: &str) -> Rule {
    Rule::Example(text.into())
}

fn text(pattern: &str, min: usize, max: usize) -> Rule {
    Rule::Text {
        pattern: Some(pattern.to_owned()),
        min,
        max,
    }
}

fn integer(min: i64, max: u64) -> Rule {
    Rule::Integer { min, max }
}

fn choice(choices: Vec<String>) -> Rule {
    Rule::Choice(choices)
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn nullable(schema_type: &SchemaType) -> bool {
    matches!(schema_type, SchemaType::Array(types) if types.contains(&Type::Null))
}

impl Rule {
    /// A string under the rule, for a parameter, a property name or an item.
    fn schema(&self) -> Schema {
        let mut schema = Schema::Object(string().build());
        self.refine(&mut schema);
        schema
    }

    /// Narrows `schema`, as the Rust type made it (perhaps nullable), to the rule.
    fn refine(&self, schema: &mut Schema) {
        match (self, schema) {
            (Self::Text { pattern, min, max }, Schema::Object(object)) => {
                object.pattern.clone_from(pattern);
                object.min_length = (*min > 0).then_some(*min);
                object.max_length = Some(*max);
            }
            (Self::Integer { min, max }, Schema::Object(object)) => {
                object.minimum = Some((*min).into());
                object.maximum = Some((*max).into());
                // Beyond `int64`, which would bound it below `u64::MAX`.
                if *max > i64::MAX as u64 {
                    object.format = None;
                }
            }
            (Self::Choice(choices), Schema::Object(object)) => {
                let mut values: Vec<Value> = choices.iter().map(|c| c.as_str().into()).collect();
                if nullable(&object.schema_type) {
                    values.push(Value::Null);
                }
                object.enum_values = Some(values);
                object.example = None;
            }
            (Self::List { items, min, max }, Schema::Array(array)) => {
                if let ArrayItems::RefOrSchema(item) = &mut array.items
                    && let RefOr::T(item) = item.as_mut()
                {
                    items.refine(item);
                }
                array.min_items = (*min > 0).then_some(*min);
                array.max_items = *max;
            }
            (Self::Map(names, values), Schema::Object(object)) => {
                object.property_names = Some(Box::new(names.schema()));
                match object.additional_properties.as_deref_mut() {
                    Some(AdditionalProperties::RefOr(RefOr::T(schema))) => values.refine(schema),
                    _ => panic!("{self:?} needs an object of values"),
                }
            }
            (Self::Example(value), Schema::Object(object)) => {
                object.examples = vec![value.clone()];
            }
            (Self::Object { nullable }, Schema::Object(object)) => {
                object.schema_type = if *nullable {
                    SchemaType::from_iter([Type::Object, Type::Null])
                } else {
                    SchemaType::Type(Type::Object)
                };
            }
            (rule, schema) => panic!(
                "{rule:?} does not fit {}",
                serde_json::to_string(schema).unwrap_or_default()
            ),
        }
    }
}
