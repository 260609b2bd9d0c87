//! What control's integration tests share: a valid configuration, the app on
//! a socket, the admin API client ([`api`]), the panel's client
//! ([`panel`]), headless Chromium ([`browser`]) and control's link with real
//! edges ([`stack`]). Each test binary declares `mod support;` and uses its
//! part.

pub mod api;
pub mod browser;
pub mod panel;
pub mod stack;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use latchkey_control::app::{self, AppState};
use latchkey_control::config::Config;

/// A valid configuration; `extra` are more `LATCHKEY_*` variables.
pub fn config(extra: &[(&str, &str)]) -> Config {
    let env: BTreeMap<String, String> = [
        ("DATABASE_URL", "postgres://unused.invalid/latchkey"),
        (
            "SECRET_KEY",
            "test-secret-key-test-secret-key-test-secret-key",
        ),
        (
            "JWT_SECRET",
            "test-jwt-secret-test-jwt-secret-test-jwt-secret",
        ),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Config::from_layers(None, &env).expect("test configuration is valid")
}

/// The app served on a free port of 127.0.0.1, as `serve` would; answers its
/// base URL.
pub async fn serve(state: AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app::router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}
