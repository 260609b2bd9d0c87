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

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

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
