//! A migrated database of the scenario's own, dropped when the scenario ends.

use anyhow::Context;
use sqlx::{Connection, PgConnection, PgPool};

#[derive(Debug)]
pub struct ScratchDatabase {
    server_url: String,
    name: String,
    pub pool: PgPool,
}

impl ScratchDatabase {
    pub async fn create(server_url: &str, connections: u32) -> anyhow::Result<Self> {
        let name = format!("latchkey_bench_{}", std::process::id());
        let mut admin = PgConnection::connect(server_url)
            .await
            .context("connecting to DATABASE_URL")?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let url = database_url(server_url, &name);
        let pool = latchkey_control::db::connect(&url, connections)
            .await
            .context("connecting to the scratch database")?;
        latchkey_control::db::migrate(&pool)
            .await
            .context("migrating the scratch database")?;
        Ok(Self {
            server_url: server_url.to_owned(),
            name,
            pool,
        })
    }

    /// The scratch database's URL, for tools run on it.
    pub fn url(&self) -> String {
        database_url(&self.server_url, &self.name)
    }

    pub async fn drop(self) -> anyhow::Result<()> {
        self.pool.close().await;
        let mut admin = PgConnection::connect(&self.server_url).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await?;
        Ok(())
    }
}

/// `url` with its database name replaced by `name`.
fn database_url(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            super::database_url("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            super::database_url("postgres://u@h", "x"),
            "postgres://u@h/x"
        );
        assert_eq!(
            super::database_url("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
