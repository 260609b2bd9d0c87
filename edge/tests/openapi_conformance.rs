//! The edge's OpenAPI document is true to its server. Schemathesis reads
//! `/openapi.json` from a live edge, sends every route requests generated
//! from the document (valid ones and invalid ones) and checks each answer:
//! no server error, only documented statuses, content types, headers and
//! bodies, every schema-valid request accepted and every invalid one refused.
//!
//! Needs `schemathesis` (v4, `pip install schemathesis`) on the PATH: the
//! test fails without it, and `deploy/local/test.sh` installs it.
//!
//! The edge has no link, so the forwarded calls are checked up to what the
//! edge decides itself (validation, limits) and answer `503
//! CONTROL_UNAVAILABLE` past it; control's answers are not exercised here.

mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use latchkey_shared::token;
use uuid::Uuid;

use support::{Fixture, session_claims, signer};

/// Every check that applies to this API: all of schemathesis' but the ones
/// about authentication and resources created and read back, which it has
/// none of.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_headers_conformance,response_schema_conformance,positive_data_acceptance,\
negative_data_rejection,missing_required_header,unsupported_method,allow_header_conformance";

/// Test cases per operation and phase: some 2 000 requests in all, seconds.
const MAX_EXAMPLES: &str = "100";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_document_true_to_the_server() {
    let fixture = support::fixture("conformance");
    // The test edge's rate limit is far above what the run sends: no 429s.
    let edge = latchkey_edge::start(support::config(&fixture))
        .await
        .unwrap();
    let config = fixture.dir.join("schemathesis.toml");
    std::fs::write(&config, schemathesis_config(&fixture)).unwrap();
    let schema = format!("http://{}/openapi.json", edge.addr);
    let dir = fixture.dir.clone();
    let run = tokio::task::spawn_blocking(move || schemathesis(&schema, &config, &dir))
        .await
        .unwrap();
    edge.stop().await;
    let output = match run {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "schemathesis is not installed: `pip install schemathesis` \
             (deploy/local/test.sh installs it when missing)"
        ),
        Err(error) => panic!("schemathesis could not be started: {error}"),
    };
    assert!(
        output.status.success(),
        "schemathesis found the document untrue to the server ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One bounded, reproducible run; its files go to `dir`.
fn schemathesis(schema: &str, config: &Path, dir: &Path) -> std::io::Result<Output> {
    let hooks: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "schemathesis",
        "hooks.py",
    ]
    .iter()
    .collect();
    Command::new("schemathesis")
        .arg("--no-color")
        .arg("--config-file")
        .arg(config)
        .args(["run", schema])
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", "20261128"])
        .args(["--generation-database", "none"])
        // Generation speed is the machine's, not the server's: a busy CI
        // host must not fail the run (the other health checks count cases).
        .args(["--suppress-health-check", "too_slow"])
        // The keys and tokens are the fixture's: show them in failures.
        .args(["--output-sanitize", "false"])
        .env("SCHEMATHESIS_HOOKS", hooks)
        .current_dir(dir)
        .output()
}

/// What the document cannot know: values the fixture's snapshot holds, mixed
/// into half the generated requests so they reach past "no such license"
/// (every license state, the products, a live, a revoked and a forged
/// session token).
fn schemathesis_config(fixture: &Fixture) -> String {
    let mut keys: Vec<String> = fixture.keys.values().cloned().collect();
    keys.sort();
    let claims = session_claims;
    let tokens = [
        token::sign(&claims(Uuid::from_u128(5), 1), &signer()),
        token::sign(&claims(Uuid::from_u128(6), 2), &signer()),
        token::sign(&claims(fixture.revoked_session, 1), &signer()),
        token::sign(&claims(Uuid::from_u128(7), 9), &signer()),
    ];
    let list = |values: &[&str]| {
        values
            .iter()
            .map(|v| format!("{v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut toml = String::from(
        "# 503 is a documented answer (NOT_READY, CONTROL_UNAVAILABLE: this edge has\n\
         # no link), retried by clients; any other 5xx is a failure.\n\
         [checks.not_a_server_error]\n\
         expected-statuses = [\"2xx\", \"3xx\", \"4xx\", \"503\"]\n\n",
    );
    for (name, values) in [
        ("license_keys", keys.iter().map(String::as_str).collect()),
        (
            "session_tokens",
            tokens.iter().map(String::as_str).collect(),
        ),
        ("products", vec!["studio", "other"]),
        ("versions", vec!["2.4.0", "1.9", "v3"]),
        ("features", vec!["sync"]),
        ("channels", vec!["stable", "beta"]),
    ] {
        writeln!(
            toml,
            "[dictionaries.{name}]\nvalues = [{}]\n",
            list(&values)
        )
        .unwrap();
    }
    toml.push_str("[parameters]\n");
    for (parameter, dictionary) in [
        ("body.license_key", "license_keys"),
        ("path.license_key", "license_keys"),
        ("body.session_token", "session_tokens"),
        ("body.product", "products"),
        ("query.product", "products"),
        ("body.app_version", "versions"),
        ("body.version", "versions"),
        ("body.feature", "features"),
        ("query.channel", "channels"),
    ] {
        writeln!(
            toml,
            "{parameter:?} = {{ dictionary = {dictionary:?}, probability = 0.5 }}"
        )
        .unwrap();
    }
    toml
}
