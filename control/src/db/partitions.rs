//! Monthly partitions of `license_heartbeats`: created ahead, retired when
//! older than the retention.
//!
//! The maintenance job keeps the current month and `months_ahead` more in
//! place, and runs often enough (hourly) that a month boundary is never
//! missed. The ingest creates a partition itself only for records outside
//! those months, and remembers the months it has seen (`ingest::KnownPartitions`).

use sqlx::PgPool;
use time::{Date, Month};

/// A partition of `license_heartbeats`, by the month it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub month: Date,
}

/// What a maintenance run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    pub created: u32,
    pub retired: Vec<String>,
}

/// Creates the partitions of `today`'s month and the next `months_ahead`.
pub async fn ensure_ahead(
    pool: &PgPool,
    today: Date,
    months_ahead: u32,
) -> Result<u32, sqlx::Error> {
    let created: i32 = sqlx::query_scalar("SELECT latchkey_ensure_heartbeat_partitions($1, $2)")
        .bind(today)
        .bind(months_ahead as i32)
        .fetch_one(pool)
        .await?;
    Ok(created as u32)
}

/// The partitions that exist, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<Partition>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_class p ON p.oid = i.inhparent
          WHERE p.relname = 'license_heartbeats' AND c.relkind = 'r'",
    )
    .fetch_all(pool)
    .await?;
    let mut partitions: Vec<Partition> = names
        .into_iter()
        .filter_map(|name| month_of(&name).map(|month| Partition { name, month }))
        .collect();
    partitions.sort_by_key(|p| p.month);
    Ok(partitions)
}

/// Detaches and drops every partition whose whole month lies more than
/// `retention_months` before `today`'s month.
pub async fn retire_older_than(
    pool: &PgPool,
    today: Date,
    retention_months: u32,
) -> Result<Vec<String>, sqlx::Error> {
    let cutoff = first_of_month(today, -(retention_months as i32));
    let mut retired = Vec::new();
    for partition in list(pool).await? {
        if partition.month >= cutoff {
            continue;
        }
        // Detach first: the drop then takes no lock on the parent table.
        let mut tx = pool.begin().await?;
        sqlx::query(&format!(
            "ALTER TABLE license_heartbeats DETACH PARTITION \"{}\"",
            partition.name
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!("DROP TABLE \"{}\"", partition.name))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        retired.push(partition.name);
    }
    Ok(retired)
}

pub async fn maintain(
    pool: &PgPool,
    today: Date,
    months_ahead: u32,
    retention_months: u32,
) -> Result<Maintenance, sqlx::Error> {
    let created = ensure_ahead(pool, today, months_ahead).await?;
    let retired = retire_older_than(pool, today, retention_months).await?;
    Ok(Maintenance { created, retired })
}

/// How many months after `today`'s have a partition, counting on from the
/// next one until the first gap (0: next month's is missing).
pub fn months_ready_ahead(partitions: &[Partition], today: Date) -> u32 {
    let mut ahead = 0;
    while partitions
        .iter()
        .any(|p| p.month == first_of_month(today, ahead as i32 + 1))
    {
        ahead += 1;
    }
    ahead
}

/// `license_heartbeats_2026_11` → 2026-11-01. Names are ours (the SQL
/// function makes them), so anything else is not a monthly partition.
fn month_of(name: &str) -> Option<Date> {
    let suffix = name.strip_prefix("license_heartbeats_")?;
    let (year, month) = suffix.split_once('_')?;
    let month = Month::try_from(month.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(year.parse().ok()?, month, 1).ok()
}

/// The first day of the month `offset` months from `day`'s month.
fn first_of_month(day: Date, offset: i32) -> Date {
    let index = day.year() * 12 + (day.month() as i32 - 1) + offset;
    let month = Month::try_from((index.rem_euclid(12) + 1) as u8).expect("1..=12");
    Date::from_calendar_date(index.div_euclid(12), month, 1).expect("valid first of month")
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn names_and_months() {
        assert_eq!(
            month_of("license_heartbeats_2026_11"),
            Some(date!(2026 - 11 - 01))
        );
        assert_eq!(month_of("license_heartbeats_default"), None);
        assert_eq!(
            first_of_month(date!(2026 - 01 - 15), -1),
            date!(2025 - 12 - 01)
        );
        assert_eq!(
            first_of_month(date!(2026 - 11 - 28), -12),
            date!(2025 - 11 - 01)
        );
        assert_eq!(
            first_of_month(date!(2026 - 11 - 28), 3),
            date!(2027 - 02 - 01)
        );
    }

    #[test]
    fn months_ready_ahead_stop_at_the_first_gap() {
        let made = |months: &[Date]| -> Vec<Partition> {
            months
                .iter()
                .map(|&month| Partition {
                    name: format!(
                        "license_heartbeats_{}_{:02}",
                        month.year(),
                        month.month() as u8
                    ),
                    month,
                })
                .collect()
        };
        let today = date!(2026 - 12 - 31);
        let december = date!(2026 - 12 - 01);
        let january = date!(2027 - 01 - 01);
        let february = date!(2027 - 02 - 01);
        let march = date!(2027 - 03 - 01);
        assert_eq!(months_ready_ahead(&made(&[december]), today), 0);
        assert_eq!(
            months_ready_ahead(&made(&[december, january, february]), today),
            2
        );
        assert_eq!(
            months_ready_ahead(&made(&[december, january, march]), today),
            1
        );
        assert_eq!(months_ready_ahead(&made(&[february]), today), 0);
    }
}
