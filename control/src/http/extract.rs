//! Extractors whose rejections speak our error format, the page shape of
//! every list and the answer of every create.
//!
//! - [`Json`]: the body must say `application/json` (else 415), fit in
//!   `max_body_bytes` (else 413) and deserialize (else 400 naming the field's
//!   JSON path; request types refuse unknown fields).
//! - [`Csv`]: a `text/csv` body (else 415) in UTF-8 (else 400), within
//!   `max_body_bytes` (else 413).
//! - [`Query`]: query-string parameters, 400 naming the parameter.
//! - [`List`]: a list's query string, its filters and its [`Pagination`]:
//!   `page` (from 1) and `per_page` (1 to 200, default 50).
//! - [`created`]: `201 Created` with its `Location`.
//! - [`Export`]: an export's query string, its `format` and filters; and
//!   [`download`], the file it answers.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_shared::api::ErrorCode;
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::imports;
use crate::export;
use crate::http::error::ApiError;
use crate::http::{API_PREFIX, BodyLimit};

pub const DEFAULT_PER_PAGE: u32 = 50;
pub const MAX_PER_PAGE: u32 = 200;
/// The largest page: the document's `page` is an `int32`.
pub const MAX_PAGE: u32 = i32::MAX as u32;

/// A JSON body in, a JSON body out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

/// A CSV body, as text.
#[derive(Debug, Clone, Default)]
pub struct Csv(pub String);

/// An import's file: CSV (`text/csv`) or JSON (`application/json`), as text.
#[derive(Debug, Clone)]
pub struct ImportFile {
    pub format: imports::Format,
    pub text: String,
}

/// Query-string parameters, read as `T`: with `#[serde(deny_unknown_fields)]`
/// an unknown one is refused, naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

/// Path parameters; a value of the wrong shape is a 400 naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

/// A list's query string: the filters `F` (which refuse parameters they do
/// not name, with `#[serde(deny_unknown_fields)]`) and which page.
#[derive(Debug, Clone, Copy)]
pub struct List<F> {
    pub filter: F,
    pub pagination: Pagination,
}

/// The filters of a list that has none.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFilter {}

/// Which page of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Pagination {
    /// From 1.
    #[param(required = false, minimum = 1, maximum = 2147483647, default = 1)]
    pub page: u32,
    #[param(required = false, minimum = 1, maximum = 200, default = 50)]
    pub per_page: u32,
}

/// One page of a list, with the total count over all pages.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub per_page: u32,
    pub total: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    #[default]
    Csv,
    Json,
}

/// An export's query string: its format and the list's filters `F`.
#[derive(Debug)]
pub struct Export<F> {
    pub format: ExportFormat,
    pub filter: F,
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "the body must be JSON with `Content-Type: application/json`",
            ));
        }
        parse_body(&read_body(request, state).await?).map(Json)
    }
}

impl<S: Send + Sync> FromRequest<S> for Csv {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if essence(request.headers()).as_deref() != Some("text/csv") {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "the body must be CSV with `Content-Type: text/csv`",
            ));
        }
        Ok(Self(read_text(request, state).await?))
    }
}

impl<S: Send + Sync> FromRequest<S> for ImportFile {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let format = match essence(request.headers()).as_deref() {
            Some("text/csv") => imports::Format::Csv,
            Some("application/json") => imports::Format::Json,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "the body must be `Content-Type: text/csv` or `application/json`",
                ));
            }
        };
        let text = read_text(request, state).await?;
        Ok(Self { format, text })
    }
}

/// The whole body as UTF-8 text without U+0000 (which PostgreSQL's text
/// refuses).
async fn read_text<S: Send + Sync>(request: Request, state: &S) -> Result<String, ApiError> {
    let bytes = read_body(request, state).await?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|error| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "the body must be UTF-8 text; byte {} is not",
                error.utf8_error().valid_up_to()
            ),
        )
    })?;
    if text.contains('\0') {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the body must not contain U+0000",
        ));
    }
    Ok(text)
}

/// The whole body, within `max_body_bytes`. A body announced too large is
/// refused before a byte of it is read; one that lies is cut off by
/// `DefaultBodyLimit` as it streams.
async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if let (Some(announced), Some(BodyLimit(limit))) =
        (announced, request.extensions().get::<BodyLimit>())
        && announced > *limit as u64
    {
        return Err(too_large());
    }
    Bytes::from_request(request, state)
        .await
        .map_err(body_rejection)
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        split_query(parts, []).map(|([], query)| Query(query))
    }
}

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;

        if let Ok(params) = axum::extract::RawPathParams::from_request_parts(parts, state).await {
            for (key, value) in &params {
                no_nul(key, value)?;
            }
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => {
                let message = error.body_text();
                let field = match error.kind() {
                    ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::InvalidUtf8InPathParam { key }
                    | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
                    _ => axum::extract::RawPathParams::from_request_parts(parts, state)
                        .await
                        .ok()
                        .and_then(|params| {
                            let mut keys = params.iter().map(|(key, _)| key.to_owned());
                            keys.next().filter(|_| keys.next().is_none())
                        }),
                };
                let error = ApiError::new(ErrorCode::InvalidRequest, message);
                Err(match field {
                    Some(field) => error.with_field(field),
                    None => error,
                })
            }
            Err(other) => Err(ApiError::internal(other.body_text())),
        }
    }
}

impl<F, S> FromRequestParts<S> for List<F>
where
    F: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ([page, per_page], filter) = split_query(parts, ["page", "per_page"])?;
        let pagination = Pagination {
            page: number("page", page.as_deref(), 1, MAX_PAGE, 1)?,
            per_page: number(
                "per_page",
                per_page.as_deref(),
                1,
                MAX_PER_PAGE,
                DEFAULT_PER_PAGE,
            )?,
        };
        Ok(Self { filter, pagination })
    }
}

impl<F, S> FromRequestParts<S> for Export<F>
where
    F: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ([format], filter) = split_query(parts, ["format"])?;
        let format = match format {
            None => ExportFormat::default(),
            Some(text) => ExportFormat::deserialize(text.as_str().into_deserializer()).map_err(
                |error: serde::de::value::Error| ApiError::invalid("format", error.to_string()),
            )?,
        };
        Ok(Self { format, filter })
    }
}

impl From<ExportFormat> for export::Format {
    fn from(format: ExportFormat) -> Self {
        match format {
            ExportFormat::Csv => Self::Csv,
            ExportFormat::Json => Self::Json,
        }
    }
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`),
/// for `#[serde(default, deserialize_with = "present")]`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Takes the parameters `names` out of the query string and reads the rest
/// as `F`; a parameter named twice is refused.
pub fn split_query<F: DeserializeOwned, const N: usize>(
    parts: &Parts,
    names: [&str; N],
) -> Result<([Option<String>; N], F), ApiError> {
    let query = parts.uri.query().unwrap_or_default();
    let mut taken = [const { None }; N];
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        no_nul(&key, &key)?;
        no_nul(&key, &value)?;
        match names.iter().position(|name| *name == key) {
            Some(index) if taken[index].is_some() => {
                return Err(ApiError::invalid(key, "given more than once"));
            }
            Some(index) => taken[index] = Some(value.into_owned()),
            None => {
                rest.append_pair(&key, &value);
            }
        }
    }
    let rest = rest.finish();
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(rest.as_bytes()));
    let filter = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let field = error.path().to_string();
        let message = error.inner().to_string();
        ApiError::invalid(field_or(&field, &message), message)
    })?;
    Ok((taken, filter))
}

/// `201 Created` with `Location` naming what was made, below the API's prefix.
pub fn created<T: Serialize>(location: &str, body: T) -> Response {
    (
        StatusCode::CREATED,
        [(header::LOCATION, format!("{API_PREFIX}{location}"))],
        Json(body),
    )
        .into_response()
}

impl Pagination {
    pub fn limit(&self) -> i64 {
        i64::from(self.per_page)
    }

    pub fn offset(&self) -> i64 {
        (i64::from(self.page) - 1) * i64::from(self.per_page)
    }

    pub fn page<T>(&self, items: Vec<T>, total: i64) -> Page<T> {
        Page {
            items,
            page: self.page,
            per_page: self.per_page,
            total,
        }
    }

    /// This page of a list held whole (the services answer a few short
    /// lists, like products and flags, in one piece).
    pub fn slice<T>(&self, all: Vec<T>) -> Page<T> {
        let total = all.len() as i64;
        let items = all
            .into_iter()
            .skip(usize::try_from(self.offset()).unwrap_or(usize::MAX))
            .take(self.per_page as usize)
            .collect();
        self.page(items, total)
    }
}

impl Default for Pagination {
    fn default() -> Self {
        Self {
            page: 1,
            per_page: DEFAULT_PER_PAGE,
        }
    }
}

/// Turns a body that could not be read into our error.
fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        ApiError::new(ErrorCode::InvalidRequest, "the body could not be read")
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        "the body is larger than this server accepts (max_body_bytes)",
    )
}

/// Parses a request body, a JSON object, naming the JSON path of what is
/// wrong.
fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Trailing characters are a syntax error here too.
    let value: Value = serde_json::from_slice(bytes).map_err(|error| json_error("", &error))?;
    // serde reads a struct from an array as well, by position.
    if !value.is_object() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the body must be a JSON object",
        ));
    }
    from_value(value)
}

/// Reads a JSON value as `T`, naming the JSON path of what is wrong. JSON
/// has one kind of number: `3.0` is the integer 3, as JSON Schema says, so
/// integral numbers written with a fraction become integers first. PostgreSQL
/// text cannot hold U+0000, so a string (or key) with it is refused here
/// rather than failing in the database.
pub fn from_value<T: DeserializeOwned>(mut value: Value) -> Result<T, ApiError> {
    normalise(&mut value, &mut String::new())?;
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        json_error(&path, error.inner())
    })
}

fn normalise(value: &mut Value, path: &mut String) -> Result<(), ApiError> {
    match value {
        Value::String(text) => no_nul(path, text),
        Value::Number(number) => {
            if number.is_f64()
                && let Some(integer) = number.as_f64().and_then(integral)
            {
                *number = integer;
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().enumerate().try_for_each(|(index, item)| {
            let len = path.len();
            path.push_str(&format!("[{index}]"));
            normalise(item, path)?;
            path.truncate(len);
            Ok(())
        }),
        Value::Object(members) => members.iter_mut().try_for_each(|(key, member)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            no_nul(path, key)?;
            normalise(member, path)?;
            path.truncate(len);
            Ok(())
        }),
        Value::Null | Value::Bool(_) => Ok(()),
    }
}

/// The integer a float with no fraction stands for, when one fits.
fn integral(float: f64) -> Option<serde_json::Number> {
    const TWO_TO_THE_64: f64 = 18_446_744_073_709_551_616.0;
    const MINUS_TWO_TO_THE_63: f64 = -9_223_372_036_854_775_808.0;
    if float.fract() != 0.0 || !(MINUS_TWO_TO_THE_63..TWO_TO_THE_64).contains(&float) {
        None
    } else if float >= 0.0 {
        Some((float as u64).into())
    } else {
        Some((float as i64).into())
    }
}

/// Refuses U+0000, which no text column can store.
pub fn no_nul(field: &str, text: &str) -> Result<(), ApiError> {
    if text.contains('\0') {
        Err(ApiError::invalid(field, "must not contain U+0000"))
    } else {
        Ok(())
    }
}

fn json_error(path: &str, error: &serde_json::Error) -> ApiError {
    match error.classify() {
        serde_json::error::Category::Data => {
            let message = without_position(&error.to_string());
            ApiError::invalid(field_or(path, &message), message)
        }
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "malformed JSON at line {} column {}",
                error.line(),
                error.column()
            ),
        ),
        serde_json::error::Category::Io => {
            ApiError::new(ErrorCode::InvalidRequest, "the body could not be read")
        }
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    essence(headers).is_some_and(|essence| {
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

/// The media type of `Content-Type` without its parameters, lower-case.
fn essence(headers: &axum::http::HeaderMap) -> Option<String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())?;
    Some(
        content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

/// The field a message is about. serde_path_to_error's path already ends
/// with an unknown field's name, but stops at the object missing a field:
/// that name is taken from the message.
fn field_or(path: &str, message: &str) -> String {
    let path = if path == "." { "" } else { path };
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match missing {
        Some(name) if path.is_empty() => name.to_owned(),
        Some(name) => format!("{path}.{name}"),
        None => path.to_owned(),
    }
}

/// serde_json appends " at line L column C" to data errors; the field path
/// says more to the caller.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

fn number(
    field: &str,
    text: Option<&str>,
    min: u32,
    max: u32,
    default: u32,
) -> Result<u32, ApiError> {
    let Some(text) = text.filter(|text| !text.is_empty()) else {
        return Ok(default);
    };
    text.parse::<u32>()
        .ok()
        .filter(|value| (min..=max).contains(value))
        .ok_or_else(|| {
            ApiError::invalid(field, format!("must be a whole number from {min} to {max}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Inner,
        #[serde(default)]
        tags: Vec<u8>,
    }

    fn fails(json: &str) -> ApiError {
        parse_body::<Outer>(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(
            fails(r#"{"name": 1, "inner": {"count": 1}}"#).field(),
            Some("name")
        );
        assert_eq!(
            fails(r#"{"name": "a", "inner": {"count": -1}}"#).field(),
            Some("inner.count")
        );
        assert_eq!(
            fails(r#"{"name": "a", "inner": {"count": 1}, "x": 1}"#).field(),
            Some("x")
        );
        assert_eq!(
            fails(r#"{"name": "a", "inner": {"count": 1, "y": 2}}"#).field(),
            Some("inner.y")
        );
        assert_eq!(fails(r#"{"name": "a"}"#).field(), Some("inner"));
        assert_eq!(
            fails(r#"{"name": "a", "inner": {"count": 1}, "tags": [1, 300]}"#).field(),
            Some("tags[1]")
        );
        let malformed = fails(r#"{"name": "a""#);
        assert_eq!(malformed.code(), ErrorCode::InvalidRequest);
        assert_eq!(malformed.field(), None);
        assert!(
            fails(r#"{"name": "a", "inner": {"count": 1}} trailing"#)
                .field()
                .is_none()
        );
    }

    #[test]
    fn integral_floats_are_integers_and_nul_is_refused() {
        #[derive(Debug, Deserialize)]
        struct Numbers {
            n: u32,
            m: i16,
            big: u64,
        }
        let parsed: Numbers =
            parse_body(br#"{"n": 1845.0, "m": -2.0, "big": 9007199254740993}"#).unwrap();
        assert_eq!(
            (parsed.n, parsed.m, parsed.big),
            (1845, -2, 9_007_199_254_740_993)
        );
        assert_eq!(
            parse_body::<Numbers>(br#"{"n": 1.5, "m": 0, "big": 0}"#)
                .unwrap_err()
                .field(),
            Some("n")
        );
        let nul = parse_body::<Value>(br#"{"a": [{"b": "x\u0000"}]}"#).unwrap_err();
        assert_eq!(nul.field(), Some("a[0].b"));
        let key = parse_body::<Value>(br#"{"a\u0000": 1}"#).unwrap_err();
        assert_eq!(key.field(), Some("a\0"));
        let array = parse_body::<Value>(b"[1, 2]").unwrap_err();
        assert_eq!(
            (array.code(), array.field()),
            (ErrorCode::InvalidRequest, None)
        );
    }

    #[test]
    fn content_types() {
        let mut headers = axum::http::HeaderMap::new();
        assert!(!is_json(&headers));
        for (value, ok) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(is_json(&headers), ok, "{value}");
        }
    }

    #[test]
    fn page_numbers() {
        assert_eq!(number("page", None, 1, 10, 1).unwrap(), 1);
        assert_eq!(number("page", Some("3"), 1, 10, 1).unwrap(), 3);
        for bad in ["0", "11", "-1", "x", "1.5"] {
            assert_eq!(
                number("page", Some(bad), 1, 10, 1).unwrap_err().field(),
                Some("page")
            );
        }
        let p = Pagination {
            page: 3,
            per_page: 20,
        };
        assert_eq!((p.limit(), p.offset()), (20, 40));
    }

    #[test]
    fn a_list_held_whole_is_sliced_into_its_page() {
        let p = Pagination {
            page: 2,
            per_page: 2,
        };
        let page = p.slice(vec![1, 2, 3, 4, 5]);
        assert_eq!((page.items, page.total), (vec![3, 4], 5));
        assert!(p.slice(Vec::<u8>::new()).items.is_empty());
    }

    #[test]
    fn query_strings_split_into_named_parameters_and_strict_filters() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Filter {
            q: Option<String>,
        }
        let parts = |uri: &str| {
            axum::http::Request::builder()
                .uri(uri)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        let ([page], filter) =
            split_query::<Filter, 1>(&parts("/x?q=a%20b&page=2"), ["page"]).unwrap();
        assert_eq!(
            (page.as_deref(), filter.q.as_deref()),
            (Some("2"), Some("a b"))
        );
        let twice = split_query::<Filter, 1>(&parts("/x?page=1&page=2"), ["page"]).unwrap_err();
        assert_eq!(twice.field(), Some("page"));
        let unknown = split_query::<Filter, 1>(&parts("/x?sort=name"), ["page"]).unwrap_err();
        assert_eq!(unknown.field(), Some("sort"));
    }
}
