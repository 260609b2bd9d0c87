//! What the edge's integration tests share: a signing key, a snapshot with a
//! license in every state, the router on it (no socket) and a live server's
//! configuration.

// Each test crate uses part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use latchkey_edge::EdgeConfig;
use latchkey_edge::limits::RateLimits;
use latchkey_edge::routes::{self, AppState, Shared};
use latchkey_edge::server::metrics_handle;
use latchkey_edge::snapshots::SnapshotStore;
use latchkey_shared::fingerprint::Fingerprint;
use latchkey_shared::snapshot::{
    ChannelRelease, EdgeConfig as SnapshotConfig, LicenseEntry, LicenseKind, LicenseStatus, Policy,
    Product, ProductClientConfig, RevokedSession, SnapshotBuilder,
};
use latchkey_shared::token::SessionClaims;
use latchkey_shared::{LicenseKey, SigningKeyPair, TrustedKeys};
use serde_json::Value;
use tower::ServiceExt;
use uuid::Uuid;

pub fn now() -> i64 {
    latchkey_edge::snapshots::unix_now()
}

pub fn signer() -> SigningKeyPair {
    SigningKeyPair::from_seed([11; 32])
}

pub fn machine() -> Fingerprint {
    Fingerprint {
        system_uuid: Some("4c4c4544-0042-3510-8052-b4c04f384d32".into()),
        cpu_id: Some("BFEBFBFF000906EA".into()),
        macs: vec!["00:1a:2b:3c:4d:5e".into()],
        ..Fingerprint::default()
    }
}

/// The claims of a session on license `key_n` started from [`machine`],
/// valid for an hour.
pub fn session_claims(session_id: Uuid, key_n: u8) -> SessionClaims {
    SessionClaims {
        session_id,
        license_id: Uuid::from_u128(u128::from(key_n)),
        key_hash: key(key_n).hash(),
        fingerprint: machine().canonicalize().unwrap().hash(),
        issued_at: now(),
        expires_at: now() + 3600,
    }
}

/// A key per license state, named.
pub struct Fixture {
    pub dir: PathBuf,
    pub keys: HashMap<&'static str, String>,
    pub revoked_session: Uuid,
}

pub fn key(n: u8) -> LicenseKey {
    LicenseKey::from_entropy([n; 15])
}

pub fn entry(n: u8, change: impl FnOnce(&mut LicenseEntry)) -> LicenseEntry {
    let mut entry = LicenseEntry {
        key_hash: key(n).hash().0,
        license_id: Uuid::from_u128(u128::from(n)),
        status: LicenseStatus::Active,
        kind: LicenseKind::Full,
        valid_from: now() - 86_400,
        valid_until: Some(now() + 86_400),
        product_id: 1,
        device_limit: 3,
        session_limit: 1,
        usage_exhausted: false,
        devices: vec![machine().canonicalize().unwrap().digest().to_bytes()],
        policy: Policy {
            features: vec!["sync".into()],
            ..Policy::default()
        },
    };
    change(&mut entry);
    entry
}

pub fn write_snapshot(path: &Path, sequence: u64, extra_license: bool) -> Uuid {
    write_snapshot_valid_for(path, sequence, extra_license, 86_400)
}

/// As [`write_snapshot`], valid for `valid_secs` from now.
pub fn write_snapshot_valid_for(
    path: &Path,
    sequence: u64,
    extra_license: bool,
    valid_secs: i64,
) -> Uuid {
    let revoked_session = Uuid::from_u128(99);
    let mut builder = SnapshotBuilder::new(SnapshotConfig::default());
    let licenses = [
        entry(1, |_| {}),
        entry(2, |e| e.status = LicenseStatus::Suspended),
        entry(3, |e| e.status = LicenseStatus::Revoked),
        entry(4, |e| e.valid_from = now() + 3600),
        entry(5, |e| e.valid_until = Some(now() - 60)),
        entry(6, |e| e.usage_exhausted = true),
        entry(7, |e| e.product_id = 2),
    ];
    for license in licenses
        .iter()
        .chain(extra_license.then(|| entry(8, |_| {})).as_ref())
    {
        builder.add_license(license).unwrap();
    }
    for (id, slug) in [(1, "studio"), (2, "other")] {
        builder.add_product(Product {
            id,
            slug: slug.into(),
            name: slug.into(),
            min_allowed_version: Some("2.0.0".into()),
            channels: vec![ChannelRelease {
                channel: "stable".into(),
                version: "2.4.0".into(),
                download_url: None,
                published_at: now(),
            }],
            // Studio's clients heartbeat every 5 minutes and carry settings
            // of the vendor's; the other product takes the edge's defaults.
            client: if id == 1 {
                ProductClientConfig {
                    heartbeat_interval_secs: Some(300),
                    grace_period_secs: Some(86_400),
                    features: vec!["export".into(), "sync".into()],
                    settings_json: r#"{"theme":"dark","max_projects":5}"#.into(),
                }
            } else {
                ProductClientConfig::default()
            },
        });
    }
    builder.revoke_session(RevokedSession {
        session_id: revoked_session,
        token_expires_at: now() + 3600,
    });
    let bytes = builder
        .seal(&signer(), sequence, now(), now() + valid_secs)
        .unwrap();
    // Atomic replace, as an operator or the publisher would.
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, path).unwrap();
    revoked_session
}

pub fn fixture(name: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("latchkey-edge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("trusted.pem"), signer().public_key_pem()).unwrap();
    let revoked_session = write_snapshot(&dir.join("snapshot.bin"), 1, false);
    let names = [
        "valid",
        "suspended",
        "revoked",
        "not_yet_valid",
        "expired",
        "exhausted",
        "other_product",
    ];
    let keys = names
        .iter()
        .enumerate()
        .map(|(i, name)| (*name, key(i as u8 + 1).to_string()))
        .collect();
    Fixture {
        dir,
        keys,
        revoked_session,
    }
}

pub fn app(fixture: &Fixture, rate_limit: u32) -> axum::Router {
    let trusted = TrustedKeys::new().with(signer().verifying_key());
    let store = Arc::new(SnapshotStore::new(
        fixture.dir.join("snapshot.bin"),
        trusted,
    ));
    store.load().unwrap();
    let state = AppState::new(Shared {
        snapshots: store,
        limits: Arc::new(ArcSwap::from_pointee(RateLimits::new(
            rate_limit, rate_limit,
        ))),
        rate_limit_override: Some(rate_limit),
        trusted_proxies: Default::default(),
        metrics: metrics_handle(),
        link: None,
        usage: None,
        answers: Default::default(),
    });
    routes::router(state, 16 * 1024)
        .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5000))))
}

pub async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(json) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

pub fn config(fixture: &Fixture) -> EdgeConfig {
    EdgeConfig {
        snapshot: Some(fixture.dir.join("snapshot.bin")),
        trusted_keys: vec![fixture.dir.join("trusted.pem")],
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        rate_limit_per_min: Some(1_000_000_000),
        trusted_proxies: vec![],
        max_body_bytes: 16 * 1024,
        header_timeout_secs: 10,
        request_timeout_secs: 15,
        answer_key: None,
        answer_certificate: None,
        reload_check_ms: 20,
        link: Default::default(),
    }
}
