//! Stylesheet, scripts (htmx 2, vendored from the npm package `htmx.org`)
//! and icons, compiled into the binary. URLs carry a digest of all assets
//! (`/assets/<digest>/<file>`), so they are cached as immutable and a new
//! build gets new URLs.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub const ROUTE: &str = "/assets/{version}/{file}";

/// `(name, content type, bytes)`.
const FILES: [(&str, &str, &[u8]); 4] = [
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/app.js"),
    ),
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/htmx.min.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../../assets/icon.svg"),
    ),
];

static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hasher = blake3::Hasher::new();
    for (name, _, bytes) in FILES {
        hasher.update(name.as_bytes());
        hasher.update(bytes);
    }
    hasher.finalize().to_hex()[..16].to_owned()
});

/// The digest in every asset URL.
pub fn version() -> &'static str {
    &VERSION
}

pub async fn serve(Path((version, file)): Path<(String, String)>) -> Response {
    let found = FILES.iter().find(|(name, _, _)| *name == file);
    let Some((_, content_type, bytes)) = found.filter(|_| version == *VERSION) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}
