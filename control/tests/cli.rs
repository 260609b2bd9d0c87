//! The command line, run as `main` runs it (`cli::run` with an input and an
//! output), against a fresh database.

use clap::Parser;
use latchkey_control::cli::{self, Cli};
use latchkey_control::db::{self, MIGRATOR};
use latchkey_shared::TrustedKeys;
use latchkey_shared::snapshot::{Opened, SnapshotBuffer, SnapshotState, open};
use sqlx::PgPool;

/// The URL of the test's own database: the server from `DATABASE_URL`,
/// the database `#[sqlx::test]` made.
fn url_of(pool: &PgPool) -> String {
    let options = pool.connect_options();
    let server = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (base, _) = server.rsplit_once('/').unwrap();
    format!("{base}/{}", options.get_database().unwrap())
}

async fn run(args: &[&str], password_env: Option<&str>, input: &str) -> anyhow::Result<String> {
    let cli = Cli::try_parse_from(std::iter::once("latchkey-control").chain(args.iter().copied()))?;
    let mut out = Vec::new();
    cli::run(
        cli,
        password_env.map(str::to_owned),
        &mut input.as_bytes(),
        &mut out,
    )
    .await?;
    Ok(String::from_utf8(out)?)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn admin_create_reads_the_password_from_standard_input(pool: PgPool) {
    let url = url_of(&pool);
    let printed = run(
        &[
            "admin",
            "create",
            "--database-url",
            &url,
            "--username",
            "ops",
            "--role",
            "viewer",
        ],
        None,
        "correct horse battery staple\n",
    )
    .await
    .unwrap();
    assert!(printed.starts_with("admin ops created ("), "{printed}");
    let account = db::admins::find_by_username(&pool, "ops")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.role, "viewer");
    assert!(db::admins::verify_password(
        "correct horse battery staple",
        &account.password_hash
    ));

    // The variable wins over the input; an empty input with no variable is refused.
    run(
        &[
            "admin",
            "create",
            "--database-url",
            &url,
            "--username",
            "ops2",
        ],
        Some("another long password"),
        "ignored\n",
    )
    .await
    .unwrap();
    let second = db::admins::find_by_username(&pool, "ops2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.role, "admin");
    assert!(db::admins::verify_password(
        "another long password",
        &second.password_hash
    ));
    let refused = run(
        &[
            "admin",
            "create",
            "--database-url",
            &url,
            "--username",
            "ops3",
        ],
        None,
        "",
    )
    .await
    .unwrap_err();
    assert!(refused.to_string().contains("no password"), "{refused}");
}

#[test]
fn an_unknown_role_is_refused_when_parsing() {
    let error = Cli::try_parse_from([
        "latchkey-control",
        "admin",
        "create",
        "--database-url",
        "postgres://x/y",
        "--username",
        "u",
        "--role",
        "root",
    ])
    .unwrap_err();
    assert!(error.to_string().contains("not a role"), "{error}");
}

/// What a printed line starting with `prefix` says after it.
fn printed_after(printed: &str, prefix: &str) -> String {
    printed
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap()
        .trim()
        .to_owned()
}

/// `keys generate` into `dir`: the private and the public key files.
async fn generate_keys(dir: &std::path::Path) -> (String, String) {
    let printed = run(
        &["keys", "generate", "--out", dir.to_str().unwrap()],
        None,
        "",
    )
    .await
    .unwrap();
    (
        printed_after(&printed, "private key:"),
        printed_after(&printed, "public key:"),
    )
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn snapshot_export_writes_a_snapshot_an_edge_opens(pool: PgPool) {
    let url = url_of(&pool);
    let dir = std::env::temp_dir().join(format!("latchkey-cli-{}", uuid::Uuid::new_v4()));
    let (private, public) = generate_keys(&dir.join("keys")).await;
    let secret = "cli-test-secret-cli-test-secret-cli-test-secret";
    let seeded = run(
        &[
            "demo",
            "seed",
            "--database-url",
            &url,
            "--secret-key",
            secret,
            "--licenses",
            "5",
        ],
        None,
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        seeded.lines().count(),
        8,
        "5 full licenses, a trial, a suspended, an expired one"
    );

    let file = dir.join("snapshot.bin");
    let printed = run(
        &[
            "snapshot",
            "export",
            "--database-url",
            &url,
            "--signing-key",
            &private,
            "--out",
            file.to_str().unwrap(),
        ],
        None,
        "",
    )
    .await
    .unwrap();
    assert!(printed.contains("8 licenses"), "{printed}");

    let mut trusted = TrustedKeys::new();
    trusted
        .insert_pem(&std::fs::read_to_string(&public).unwrap())
        .unwrap();
    let bytes = SnapshotBuffer::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match open(bytes, &trusted, None, now).unwrap() {
        Opened::Full(full) => assert_eq!(SnapshotState::new(full).base_license_count(), 8),
        Opened::Delta(_) => panic!("an export is a full snapshot"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn backup_create_then_restore_verifies_without_swapping_unless_confirmed(pool: PgPool) {
    let url = url_of(&pool);
    let dir = std::env::temp_dir().join(format!("latchkey-cli-backup-{}", uuid::Uuid::new_v4()));
    let dir_arg = dir.to_str().unwrap();
    let made = run(
        &["backup", "--database-url", &url, "--dir", dir_arg, "create"],
        None,
        "",
    )
    .await
    .unwrap();
    assert!(made.starts_with("backup "), "{made}");
    let path = made
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split(" (").next())
        .unwrap()
        .to_owned();
    assert!(std::path::Path::new(&path).is_file(), "{path}");

    let listed = run(&["backup", "--database-url", &url, "list"], None, "")
        .await
        .unwrap();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("\"status\":\"done\""), "{listed}");

    let verified = run(
        &["backup", "--database-url", &url, "restore", &path],
        None,
        "",
    )
    .await
    .unwrap();
    assert!(
        verified.contains("SHA-256 and size match the manifest"),
        "{verified}"
    );
    assert!(verified.contains("not swapped in"), "{verified}");
    // Nothing was swapped: the backup's row (done after the dump) is still here.
    let status: String = sqlx::query_scalar("SELECT status FROM backups")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "done");

    let missing = run(
        &[
            "backup",
            "--database-url",
            &url,
            "restore",
            "/nonexistent.dump",
        ],
        None,
        "",
    )
    .await
    .unwrap_err();
    assert!(format!("{missing:#}").contains("manifest"), "{missing:#}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn import_checks_then_applies_a_file_and_export_writes_it_back(pool: PgPool) {
    let url = url_of(&pool);
    let secret = "s".repeat(48);
    let dir = std::env::temp_dir().join(format!("latchkey-cli-import-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("customers.csv");
    let import = |apply: bool| {
        let (url, secret, file) = (url.clone(), secret.clone(), file.clone());
        async move {
            let mut args = vec![
                "import",
                "--database-url",
                &url,
                "--secret-key",
                &secret,
                "customers",
                file.to_str().unwrap(),
            ];
            if apply {
                args.push("--apply");
            }
            run(&args, None, "").await
        }
    };

    std::fs::write(
        &file,
        "external_id,name,email\nc-1,Ada,ada@example.com\nc-2,Bob,nope\n",
    )
    .unwrap();
    let refused = import(true).await.unwrap_err().to_string();
    assert_eq!(refused, "1 problem(s): nothing was imported");
    let customers =
        || sqlx::query_scalar::<_, i64>("SELECT count(*) FROM customers").fetch_one(&pool);
    assert_eq!(customers().await.unwrap(), 0);

    std::fs::write(
        &file,
        "external_id,name,email\nc-1,Ada,ada@example.com\nc-2,Bob,bob@example.com\n",
    )
    .unwrap();
    let checked = import(false).await.unwrap();
    assert!(
        checked.starts_with("2 line(s): 2 created, 0 unchanged (a dry run"),
        "{checked}"
    );
    assert_eq!(customers().await.unwrap(), 0);
    let applied = import(true).await.unwrap();
    assert_eq!(applied, "2 line(s): 2 created, 0 unchanged\n");
    let again = import(true).await.unwrap();
    assert_eq!(again, "2 line(s): 0 created, 2 unchanged\n");

    let exported = dir.join("export.csv");
    let printed = run(
        &[
            "export",
            "--database-url",
            &url,
            "customers",
            "--output",
            exported.to_str().unwrap(),
        ],
        None,
        "",
    )
    .await
    .unwrap();
    assert_eq!(printed, "", "the rows go to the file");
    let text = std::fs::read_to_string(&exported).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("id,"), "{text}");
    assert_eq!(lines.count(), 2);
    let json = run(
        &[
            "export",
            "--database-url",
            &url,
            "customers",
            "--format",
            "json",
        ],
        None,
        "",
    )
    .await
    .unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn keys_certify_edge_writes_a_private_key_and_its_certificate() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("latchkey-cli-{}", uuid::Uuid::new_v4()));
    let (private, public) = generate_keys(&dir.join("keys")).await;
    let out = dir.join("edge");
    let printed = run(
        &[
            "keys",
            "certify-edge",
            "--signing-key",
            &private,
            "--out",
            out.to_str().unwrap(),
            "--valid-hours",
            "2",
        ],
        None,
        "",
    )
    .await
    .unwrap();
    let key_file = printed_after(&printed, "answer key:");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the answer key is private");
    let key = latchkey_shared::answer::AnswerKey::from_pkcs8_pem(
        &std::fs::read_to_string(&key_file).unwrap(),
    )
    .unwrap();
    let mut trusted = TrustedKeys::new();
    trusted
        .insert_pem(&std::fs::read_to_string(&public).unwrap())
        .unwrap();
    let certificate =
        std::fs::read_to_string(printed_after(&printed, "answer certificate:")).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims: latchkey_shared::token::EdgeCertificate =
        latchkey_shared::token::verify(&certificate, &trusted, now).unwrap();
    assert_eq!(
        latchkey_shared::answer::parse_public_key(&claims.public_key),
        Some(key.public_key())
    );
    assert!(
        (claims.expires_at - now - 2 * 3600).abs() < 60,
        "{claims:?}"
    );
    assert_eq!(
        printed_after(&printed, "edge id"),
        claims.edge_id.to_string()
    );
    let _ = std::fs::remove_dir_all(dir);
}
