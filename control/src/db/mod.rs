//! Everything that speaks SQL. Nothing outside this module does.

pub mod admin_sessions;
pub mod admins;
pub mod api_keys;
pub mod audit;
pub mod backups;
pub mod customers;
pub mod dashboard;
pub mod devices;
pub mod edges;
pub mod flags;
pub mod health;
pub mod imports;
pub mod ingest;
pub mod leader;
pub mod leads;
pub mod license_bulk;
pub mod licenses;
pub mod logins;
pub mod monitoring;
pub mod notify;
pub mod outbox;
pub mod partitions;
pub mod products;
pub mod publish;
pub mod resources;
mod session_ends;
pub mod sessions;
pub mod settings;
pub mod snapshot;
pub mod usage;

use std::pin::Pin;

use futures_util::Stream;
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};

/// The schema, embedded at compile time from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub async fn connect(database_url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .connect(database_url)
        .await
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Rows as they come from the database, for exports.
pub type RowStream<T> = Pin<Box<dyn Stream<Item = Result<T, sqlx::Error>> + Send>>;

/// Runs `sql` and hands its rows on one by one: the query runs on a task of
/// its own, holding one pooled connection, and at most 256 rows wait between
/// it and a slower reader, so memory stays flat however many rows there are.
/// Dropping the stream stops the query.
pub(crate) fn stream_rows<T>(pool: PgPool, mut sql: QueryBuilder<'static, Postgres>) -> RowStream<T>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move {
        let mut rows = sql.build_query_as::<T>().fetch(&pool);
        while let Some(row) = futures_util::StreamExt::next(&mut rows).await {
            if sender.send(row).await.is_err() {
                return;
            }
        }
    });
    Box::pin(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|row| (row, receiver)) },
    ))
}
