//! OpenAPI schemas of the formatted strings the client API takes (with the
//! `openapi` feature). Each pattern accepts exactly what the parser named
//! beside it accepts, so a schema-valid request is never refused as
//! malformed and a malformed one never passes. The one rule no pattern can
//! state is a license key's check symbol: its `format`, `license-key`, names
//! it, for generators that know it.
//!
//! The types are names for schemas, never built: the API types keep these
//! fields as `String` and point at them with `#[schema(value_type = …)]`.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

/// What `str::trim` removes (Unicode `White_Space`), as a class body.
const WS: &str = r"\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
/// What `char::is_control` refuses (Unicode `Cc`), as a class body.
const CTRL: &str = r"\x00-\x1F\x7F-\x9F";

/// [`LicenseKey`](crate::LicenseKey)'s forgiving parse: 25 symbols of
/// Crockford base32 in any case (the look-alikes I, L, O too), dashes,
/// spaces and tabs anywhere.
pub const LICENSE_KEY_PATTERN: &str = r"^[-\t ]*(?:[0-9A-TV-Za-tv-z][-\t ]*){25}$";
/// A well-formed key (its check symbol right), for examples.
pub const LICENSE_KEY_EXAMPLE: &str = "7KQ2M-X0RDT-9HF3W-BC4NE-8YVPG";
/// [`token::verify`](crate::token::verify) of a session token; at most
/// [`MAX_TOKEN_LEN`](crate::token::MAX_TOKEN_LEN) characters.
pub const SESSION_TOKEN_PATTERN: &str =
    r"^lk1\.sess\.[0-9a-f]{16}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{86}$";
/// A fingerprint's hex components ([`Fingerprint::canonicalize`](crate::Fingerprint::canonicalize)):
/// hex digits in any case, with `:-. {}` anywhere.
const HEX_SEPARATORS: &str = "[-:. {}]";

/// [`version::parse_version`](crate::version::parse_version): an optional
/// `v`, one to three numbers (each below 10^19), semver pre-release and build
/// suffixes, at most 128 characters once trimmed.
pub fn version_pattern() -> String {
    let number = "(?:0|[1-9][0-9]{0,18})";
    let identifier = "(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)";
    let build = "[0-9A-Za-z-]+";
    format!(
        r"^[{WS}]*(?=[0-9A-Za-z.+-]{{1,128}}[{WS}]*$)[vV]?{number}(?:\.{number}){{0,2}}(?:-{identifier}(?:\.{identifier})*)?(?:\+{build}(?:\.{build})*)?[{WS}]*$"
    )
}

/// A fingerprint's text components (`cpu_id`, the `extra` values): no
/// control characters once trimmed, at most
/// [`MAX_VALUE_LEN`](crate::fingerprint::MAX_VALUE_LEN) characters.
pub fn component_text_pattern() -> String {
    let inner = crate::fingerprint::MAX_VALUE_LEN - 2;
    format!(r"^[{WS}]*(?:[^{CTRL}{WS}](?:[^{CTRL}]{{0,{inner}}}[^{CTRL}{WS}])?)?[{WS}]*$")
}

fn hex_pattern(digits: usize) -> String {
    format!("^{HEX_SEPARATORS}*(?:[0-9A-Fa-f]{HEX_SEPARATORS}*){{{digits}}}$")
}

/// Hex that is not all zeros nor all `f` (what firmware reports for "none",
/// and `canonicalize` drops).
const REAL_HEX: &str = "(?=.*[1-9A-Fa-f])(?=.*[0-9A-Ea-e])";

/// The rule `canonicalize` answers with "no usable component reported": a
/// real system UUID, a non-blank CPU id, a real MAC or a non-blank extra
/// value. JSON Schema for `Fingerprint`'s `anyOf`, in keywords utoipa's
/// schema model lacks (`contains`, `not`): a document adds it to the
/// `Fingerprint` component itself.
pub fn fingerprint_usable_any_of() -> serde_json::Value {
    let blank = format!("^[{WS}]*$");
    let non_blank = format!("[^{WS}]");
    serde_json::json!([
        { "required": ["system_uuid"],
          "properties": { "system_uuid": { "type": "string", "pattern": REAL_HEX } } },
        { "required": ["machine_id"],
          "properties": { "machine_id": { "type": "string",
                                          "pattern": "(?=.*[1-9A-Za-z])(?=.*[0-9A-Ea-eG-Zg-z])" } } },
        { "required": ["cpu_id"],
          "properties": { "cpu_id": { "type": "string", "pattern": non_blank } } },
        { "required": ["macs"],
          "properties": { "macs": { "contains": { "type": "string", "pattern": REAL_HEX } } } },
        { "required": ["extra"],
          "properties": { "extra": { "not": { "additionalProperties": { "pattern": blank } } } } },
    ])
}

fn string(pattern: impl Into<String>, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
}

/// Implements `ToSchema` for a schema name.
macro_rules! named_schema {
    ($type:ty, $name:literal, $schema:expr) => {
        impl PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                $schema.into()
            }
        }

        impl ToSchema for $type {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

named_schema!(
    crate::LicenseKey,
    "LicenseKey",
    string(
        LICENSE_KEY_PATTERN,
        "A license key: 25 Crockford base32 symbols, the last a Luhn mod 32 check \
         symbol over the others (a key that fails it is refused as INVALID_LICENSE_KEY). \
         Any case; I, L and O read as 1, 1 and 0; dashes, spaces and tabs are ignored. \
         A license imported from another licensing system is found by its original key \
         too, which this pattern does not describe."
    )
    .format(Some(SchemaFormat::Custom("license-key".into())))
    .examples([LICENSE_KEY_EXAMPLE])
);

/// An application version as clients report it.
#[derive(Debug)]
pub struct Version;

named_schema!(
    Version,
    "Version",
    string(
        version_pattern(),
        "A semantic version, loosely: an optional leading v, missing minor or patch \
         numbers are 0, surrounding whitespace is ignored; at most 128 characters."
    )
    .examples(["2.4.0", "v2.1", "1.4.0-beta.2"])
);

/// A session token from `session/start`.
#[derive(Debug)]
pub struct SessionToken;

named_schema!(
    SessionToken,
    "SessionToken",
    string(
        SESSION_TOKEN_PATTERN,
        "A session token (lk1.sess.<key id>.<base64url claims>.<base64url signature>)."
    )
    .max_length(Some(crate::token::MAX_TOKEN_LEN))
);

/// A machine's SMBIOS UUID.
#[derive(Debug)]
pub struct SystemUuid;

named_schema!(
    SystemUuid,
    "SystemUuid",
    string(
        hex_pattern(32),
        "32 hex digits in any case, with :-. {} anywhere; all zeros or all f count as not reported."
    )
    .examples(["4c4c4544-0042-3510-8052-b4c04f384d32"])
);

/// A network card's MAC address.
#[derive(Debug)]
pub struct MacAddress;

named_schema!(
    MacAddress,
    "MacAddress",
    string(
        hex_pattern(12),
        "12 hex digits in any case, with :-. {} anywhere; all zeros or all f count as not reported."
    )
    .examples(["00:1a:2b:3c:4d:5e"])
);

/// A CPU id or an extra component's value.
#[derive(Debug)]
pub struct ComponentText;

named_schema!(
    ComponentText,
    "ComponentText",
    string(
        component_text_pattern(),
        "Free text without control characters, at most 256 characters once trimmed; \
         blank counts as not reported."
    )
    .examples(["BFEBFBFF000906EA"])
);

/// A machine id: an identifier, blank counting as not reported.
#[derive(Debug)]
pub struct MachineId;

named_schema!(
    MachineId,
    "MachineId",
    string(
        format!(r"^[{WS}]*(?:[A-Za-z0-9._:{{}}-]{{16,256}}[{WS}]*)?$"),
        "16 to 256 letters, digits and `. _ : { } -` once trimmed (`/etc/machine-id`, \
         a UUID, Windows' MachineGuid); compared without case."
    )
    .examples(["4c4c4544004235108052b4c04f384d32"])
);

/// `Fingerprint::extra`: at most [`MAX_EXTRA`](crate::fingerprint::MAX_EXTRA)
/// components, named `[a-z0-9_]{1,64}`, each a [`ComponentText`].
pub fn extra_components() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "Further components by name (`disk_serial`, `board_serial`, ...).",
        ))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[a-z0-9_]{1,64}$")),
        ))
        .additional_properties(Some(utoipa::openapi::Ref::from_schema_name(
            ComponentText::name(),
        )))
        .max_properties(Some(crate::fingerprint::MAX_EXTRA))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_key_is_well_formed() {
        assert!(LICENSE_KEY_EXAMPLE.parse::<crate::LicenseKey>().is_ok());
    }
}
