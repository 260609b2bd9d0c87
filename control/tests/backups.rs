//! Backups with the real `pg_dump` and `pg_restore` against the real
//! PostgreSQL: a seeded database dumped, restored into a scratch database
//! and compared table by table, then swapped in; a corrupt dump refused;
//! the schedule and its retention under a test clock.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use latchkey_control::backup::{BackupError, Backups};
use latchkey_control::config::{BackupConfig, TimeOfDay};
use latchkey_control::context::RequestContext;
use latchkey_control::db::{MIGRATOR, backups};
use latchkey_control::demo;
use latchkey_control::progress::Progress;
use latchkey_control::secrets::Secrets;
use sqlx::{Connection, PgConnection, PgPool};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

/// The URL of the test's own database on the server of `DATABASE_URL`.
fn url_of(pool: &PgPool) -> String {
    with_database(pool.connect_options().get_database().unwrap())
}

fn with_database(name: &str) -> String {
    let server = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (base, _) = server.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

fn scratch_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("latchkey-{name}-{}", Uuid::new_v4()))
}

fn config(dir: &Path) -> BackupConfig {
    BackupConfig {
        dir: dir.to_owned(),
        ..BackupConfig::default()
    }
}

async fn seeded(pool: &PgPool, licenses: usize) {
    let secrets = Secrets::new(SECRET).unwrap();
    demo::seed(pool, &secrets, licenses).await.unwrap();
}

/// Every table's row count and the licenses' checksum, in one database.
async fn fingerprint(url: &str) -> (backups::RowCounts, String) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let counts = backups::row_counts(&mut conn).await.unwrap();
    let checksum: String = sqlx::query_scalar(
        "SELECT md5(coalesce(string_agg(l::text, '|' ORDER BY l.id), '')) FROM licenses l",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    (counts, checksum)
}

async fn drop_database(name: &str) {
    let mut server = PgConnection::connect(&with_database("postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut server)
        .await
        .unwrap();
}

async fn database_exists(name: &str) -> bool {
    let mut server = PgConnection::connect(&with_database("postgres"))
        .await
        .unwrap();
    sqlx::query_scalar("SELECT exists (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut server)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_backup_restores_into_a_copy_equal_table_by_table_and_swaps_in(pool: PgPool) {
    seeded(&pool, 40).await;
    let url = url_of(&pool);
    let dir = scratch_dir("backup");
    let backups = Backups::new(config(&dir), &url).unwrap();
    let ctx = RequestContext::system("test");
    let before = fingerprint(&url).await;

    let progress = Progress::default();
    let made = backups
        .create(&pool, &ctx, None, &progress)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(made.status, "done");
    assert_eq!(made.origin, "manual");
    let path = PathBuf::from(made.path.clone().unwrap());
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(made.size_bytes, Some(size as i64));
    // The last stage, the checksum, went through the whole file.
    let view = progress.view();
    assert_eq!(
        (view.stage, view.done, view.total),
        ("checksum", size, Some(size))
    );
    assert_eq!(made.sha256.as_ref().map(String::len), Some(64));
    let counts = made.row_counts.clone().unwrap();
    assert_eq!(counts["licenses"], 43, "{counts:?}");
    assert_eq!(
        made.schema_version,
        Some(MIGRATOR.iter().map(|m| m.version).max().unwrap())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // Changes after the backup: a license less, and a newer snapshot chain.
    sqlx::query("DELETE FROM licenses WHERE id = (SELECT id FROM licenses ORDER BY id LIMIT 1)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO snapshots (sequence, kind, key_id, size_bytes, licenses) VALUES (41, 'full', 'k', 1, 1)",
    )
    .execute(&pool)
    .await
    .unwrap();

    let prepared = backups
        .prepare_restore(&path, &Progress::default())
        .await
        .unwrap();
    let restored_url = with_database(&prepared.scratch);
    let restored = fingerprint(&restored_url).await;
    // What was dumped: the row counts as they were (the backup's own row
    // included, as running), every license as it was.
    assert_eq!(restored.0, counts);
    assert_eq!(restored.1, before.1, "the licenses' checksum");
    assert_eq!(restored.0["licenses"], before.0["licenses"]);

    let swapped = backups.swap(&prepared).await.unwrap();
    assert!(!database_exists(&prepared.scratch).await);
    // The pool reconnects, to the restored database under the live name.
    let licenses: i64 = sqlx::query_scalar("SELECT count(*) FROM licenses")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(licenses, 43);
    // Edges never go back: the restored chain continues past the old one.
    let next: i64 = sqlx::query_scalar("SELECT coalesce(max(sequence), 0) + 1 FROM snapshots")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(next, 42);
    assert_eq!(swapped.sequence_floor, Some(41));
    // The database that was live is kept, with the change made after the backup.
    let previous = fingerprint(&with_database(&swapped.previous)).await;
    assert_eq!(previous.0["licenses"], 42);
    drop_database(&swapped.previous).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_dump_that_differs_from_its_manifest_is_refused_before_anything_is_restored(
    pool: PgPool,
) {
    seeded(&pool, 3).await;
    let url = url_of(&pool);
    let dir = scratch_dir("corrupt");
    let backups = Backups::new(config(&dir), &url).unwrap();
    let made = backups
        .create(
            &pool,
            &RequestContext::system("test"),
            None,
            &Progress::default(),
        )
        .await
        .unwrap()
        .unwrap();
    let path = PathBuf::from(made.path.unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let refused = backups
        .prepare_restore(&path, &Progress::default())
        .await
        .unwrap_err();
    assert!(matches!(refused, BackupError::Corrupt(_)), "{refused}");
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let mut server = PgConnection::connect(&with_database("postgres"))
        .await
        .unwrap();
    let scratch: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_database WHERE datname LIKE $1 || '_restore_%'",
    )
    .bind(&database)
    .fetch_one(&mut server)
    .await
    .unwrap();
    assert_eq!(scratch, 0, "no scratch database was made");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_failing_pg_dump_is_recorded_and_leaves_no_file(pool: PgPool) {
    let dir = scratch_dir("failing");
    let backups = Backups::new(
        BackupConfig {
            pg_dump: PathBuf::from("/bin/false"),
            ..config(&dir)
        },
        &url_of(&pool),
    )
    .unwrap();
    let error = backups
        .create(
            &pool,
            &RequestContext::system("test"),
            None,
            &Progress::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            BackupError::Tool {
                tool: "pg_dump",
                ..
            }
        ),
        "{error}"
    );
    let recorded = backups::list(&pool, 10).await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].status, "failed");
    assert!(recorded[0].error.as_deref().unwrap().contains("pg_dump"));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no file left");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_schedule_backs_up_once_per_slot_and_retention_deletes_exactly_the_expired(
    pool: PgPool,
) {
    let dir = scratch_dir("schedule");
    let backups = Backups::new(
        BackupConfig {
            daily_at: Some("03:00".parse::<TimeOfDay>().unwrap()),
            keep_daily: 3,
            keep_weekly: 2,
            ..config(&dir)
        },
        &url_of(&pool),
    )
    .unwrap();

    // Before the first slot's time: yesterday's slot is due (catch-up).
    let start = datetime!(2026-11-02 01:00 UTC); // a Monday
    let first = backups.run_schedule(&pool, start).await.unwrap().unwrap();
    assert_eq!(first.scheduled_for, Some(datetime!(2026-11-01 03:00 UTC)));
    assert!(
        backups
            .run_schedule(&pool, start + Duration::minutes(30))
            .await
            .unwrap()
            .is_none()
    );

    // Three weeks of days, checked a few times each day.
    let mut made = vec![first];
    for day in 0..21 {
        for hour in [2, 3, 12] {
            let now = datetime!(2026-11-02 00:00 UTC) + Duration::days(day) + Duration::hours(hour);
            if let Some(backup) = backups.run_schedule(&pool, now).await.unwrap() {
                made.push(backup);
            }
        }
    }
    assert_eq!(made.len(), 22, "one a day from 1 to 22 November");
    let slots: BTreeSet<OffsetDateTime> = made.iter().filter_map(|b| b.scheduled_for).collect();
    assert_eq!(slots.len(), 22);

    // Kept: the newest 3 days (20, 21, 22 Nov) and the newest of the 2
    // newest ISO weeks (Sunday 22 Nov, already kept, and Sunday 15 Nov).
    let left: BTreeSet<OffsetDateTime> = backups::list(&pool, 100)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|b| b.scheduled_for)
        .collect();
    let expected: BTreeSet<OffsetDateTime> = [15, 20, 21, 22]
        .into_iter()
        .map(|day| {
            time::Date::from_calendar_date(2026, time::Month::November, day)
                .unwrap()
                .with_hms(3, 0, 0)
                .unwrap()
                .assume_utc()
        })
        .collect();
    assert_eq!(left, expected);
    // Their files and no others are on disk (a dump and a manifest each).
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, 2 * expected.len());
    std::fs::remove_dir_all(&dir).unwrap();
}
