//! Usage records: what an edge saw, shipped to control in batches.
//!
//! Heartbeats and session events are one record each; verifications are
//! counted at the edge per license, device and minute, so one record stands
//! for many requests. A batch carries an id chosen by the edge: delivery is
//! at-least-once and control commits each batch id once.
//!
//! The types derive serde (JSON, for tools and tests) and rkyv (the link's
//! encoding, like the snapshot).

use std::net::IpAddr;
use std::num::NonZeroU32;

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a usage record counts. The names are the wire names and the values
/// of `license_heartbeats.kind`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum UsageKind {
    Verify = 0,
    Heartbeat = 1,
    SessionStart = 2,
    SessionEnd = 3,
    Activation = 4,
}

impl UsageKind {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            Self::Heartbeat => "heartbeat",
            Self::SessionStart => "session_start",
            Self::SessionEnd => "session_end",
            Self::Activation => "activation",
        }
    }
}

/// One row of `license_heartbeats`, without the edge id (the batch has it).
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize,
)]
pub struct UsageRecord {
    /// Unix time in microseconds: PostgreSQL's `timestamptz` resolution, so
    /// a record stores exactly what the edge sent.
    pub at_micros: i64,
    /// Not checked against `licenses` on ingest: the usage of a license
    /// deleted meanwhile is still history.
    pub license_id: Uuid,
    pub device_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub kind: UsageKind,
    /// How many events the record stands for (verifications of one license,
    /// device and minute; 1 for everything else). Zero would be no record.
    pub count: NonZeroU32,
    pub app_version: Option<String>,
    /// The client's address as the edge saw it.
    pub ip: Option<IpAddr>,
}

/// Records an edge ships together; control commits a `batch_id` once, so
/// the edge resends the same batch, with the same id, until it is
/// acknowledged.
impl UsageRecord {
    /// One occurrence of `kind` at `at_micros`, without the optional details.
    pub fn new(
        kind: UsageKind,
        at_micros: i64,
        license_id: Uuid,
        session_id: Option<Uuid>,
    ) -> Self {
        Self {
            at_micros,
            license_id,
            device_id: None,
            session_id,
            kind,
            count: NonZeroU32::MIN,
            app_version: None,
            ip: None,
        }
    }
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize,
)]
pub struct UsageBatch {
    pub batch_id: Uuid,
    pub edge_id: Uuid,
    pub records: Vec<UsageRecord>,
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use rkyv::rancor;

    use super::*;

    fn record(kind: UsageKind, ip: Option<IpAddr>) -> UsageRecord {
        UsageRecord {
            at_micros: 1_795_000_000_123_456,
            license_id: Uuid::new_v4(),
            device_id: Some(Uuid::new_v4()),
            session_id: None,
            kind,
            count: NonZeroU32::new(17).unwrap(),
            app_version: Some("2.4.0".into()),
            ip,
        }
    }

    fn batch() -> UsageBatch {
        UsageBatch {
            batch_id: Uuid::new_v4(),
            edge_id: Uuid::new_v4(),
            records: vec![
                record(
                    UsageKind::Verify,
                    Some(Ipv4Addr::new(203, 0, 113, 7).into()),
                ),
                record(UsageKind::SessionStart, Some(Ipv6Addr::LOCALHOST.into())),
                record(UsageKind::Activation, None),
            ],
        }
    }

    #[test]
    fn rkyv_round_trip() {
        let batch = batch();
        let bytes = rkyv::to_bytes::<rancor::Error>(&batch).unwrap();
        let back = rkyv::from_bytes::<UsageBatch, rancor::Error>(&bytes).unwrap();
        assert_eq!(back, batch);
    }

    #[test]
    fn json_round_trip_and_kind_names() {
        let batch = batch();
        let json = serde_json::to_string(&batch).unwrap();
        assert_eq!(serde_json::from_str::<UsageBatch>(&json).unwrap(), batch);
        for kind in [
            UsageKind::Verify,
            UsageKind::Heartbeat,
            UsageKind::SessionStart,
            UsageKind::SessionEnd,
            UsageKind::Activation,
        ] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
    }

    #[test]
    fn a_count_of_zero_is_refused() {
        let mut value = serde_json::to_value(record(UsageKind::Heartbeat, None)).unwrap();
        value["count"] = 0.into();
        assert!(serde_json::from_value::<UsageRecord>(value).is_err());
    }
}
