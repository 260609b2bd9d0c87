//! When scheduled backups are due, and which of them retention keeps. Both
//! are functions of the time given, so tests run them under any clock.

use std::collections::BTreeSet;

use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::config::TimeOfDay;

/// The newest slot at or before `now`: today's at `at` once that has come,
/// else yesterday's. A control that was down at the slot backs up when it
/// is back, once, not once per missed day.
pub fn latest_slot(now: OffsetDateTime, at: TimeOfDay) -> OffsetDateTime {
    let now = now.to_offset(time::UtcOffset::UTC);
    let today = now.date().with_time(at.0).assume_utc();
    if now >= today {
        today
    } else {
        today - time::Duration::days(1)
    }
}

/// Of the scheduled backups (id and slot), those retention deletes: kept
/// are the newest of each of the `keep_daily` newest days that have one, and
/// the newest of each of the `keep_weekly` newest ISO weeks that have one.
pub fn expired(backups: &[(Uuid, OffsetDateTime)], keep_daily: u32, keep_weekly: u32) -> Vec<Uuid> {
    let mut newest_first = backups.to_vec();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = BTreeSet::new();
    keep_newest_per(&newest_first, keep_daily, |at| at.date(), &mut kept);
    keep_newest_per(&newest_first, keep_weekly, week_of, &mut kept);
    newest_first
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| !kept.contains(id))
        .collect()
}

fn keep_newest_per<K: PartialEq>(
    newest_first: &[(Uuid, OffsetDateTime)],
    periods: u32,
    period_of: impl Fn(OffsetDateTime) -> K,
    kept: &mut BTreeSet<Uuid>,
) {
    let mut last: Option<K> = None;
    let mut seen = 0;
    for (id, at) in newest_first {
        let period = period_of(*at);
        if last.as_ref() == Some(&period) {
            continue;
        }
        if seen == periods {
            break;
        }
        seen += 1;
        kept.insert(*id);
        last = Some(period);
    }
}

fn week_of(at: OffsetDateTime) -> (i32, u8) {
    let date: Date = at.date();
    let (year, week, _) = date.to_iso_week_date();
    (year, week)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn at(text: &str) -> TimeOfDay {
        text.parse().unwrap()
    }

    #[test]
    fn the_latest_slot_is_today_once_the_time_has_come() {
        assert_eq!(
            latest_slot(datetime!(2026-12-02 02:59 UTC), at("03:00")),
            datetime!(2026-12-01 03:00 UTC)
        );
        assert_eq!(
            latest_slot(datetime!(2026-12-02 03:00 UTC), at("03:00")),
            datetime!(2026-12-02 03:00 UTC)
        );
        assert_eq!(
            latest_slot(datetime!(2026-12-02 23:00 +02:00), at("03:00")),
            datetime!(2026-12-02 03:00 UTC)
        );
    }

    #[test]
    fn retention_keeps_the_newest_per_day_and_per_week() {
        // Daily backups for 30 days (Tuesday 3 Nov to Wednesday 2 Dec 2026)
        // and a second one on the newest day.
        let mut backups: Vec<(Uuid, OffsetDateTime)> = (0..30)
            .map(|day| {
                (
                    Uuid::from_u128(day as u128),
                    datetime!(2026-12-02 03:00 UTC) - time::Duration::days(day),
                )
            })
            .collect();
        let extra = (Uuid::from_u128(100), datetime!(2026-12-02 01:00 UTC));
        backups.push(extra);
        let expired: BTreeSet<Uuid> = expired(&backups, 7, 4).into_iter().collect();
        let kept: BTreeSet<u128> = backups
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !expired.contains(id))
            .map(|id| id.as_u128())
            .collect();
        // The 7 newest days (0..=6); weeks: 2 Dec's (day 0), then Sundays
        // 29 Nov (3), 22 Nov (10) and 15 Nov (17), each the newest of its week.
        assert_eq!(kept, BTreeSet::from([0, 1, 2, 3, 4, 5, 6, 10, 17]));
        assert!(expired.contains(&extra.0));
        assert_eq!(expired.len(), backups.len() - kept.len());
    }

    #[test]
    fn keeping_nothing_expires_everything() {
        let backups = [(Uuid::from_u128(1), datetime!(2026-12-02 03:00 UTC))];
        assert_eq!(expired(&backups, 0, 0), vec![Uuid::from_u128(1)]);
        assert!(expired(&backups, 1, 0).is_empty());
    }
}
