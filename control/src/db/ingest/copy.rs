//! `license_heartbeats` rows in PostgreSQL's binary COPY format.
//!
//! Binary rather than text: no escaping of the free-form `app_version`, no
//! formatting and re-parsing of timestamps, UUIDs and addresses on either
//! side.

use std::net::IpAddr;

use latchkey_shared::usage::UsageRecord;
use uuid::Uuid;

/// The statement the rows of [`encode`] are sent to.
pub const COPY_HEARTBEATS: &str = "COPY license_heartbeats \
    (at, license_id, device_id, session_id, kind, count, edge_id, app_version, ip) \
    FROM STDIN WITH (FORMAT binary)";

/// The signature, then a zero flags field and a zero header-extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const COLUMNS: i16 = 9;
const TRAILER: i16 = -1;
const NULL: i32 = -1;
/// PostgreSQL counts timestamps from 2000-01-01T00:00:00Z.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;
/// 10000-01-01T00:00:00Z: usage is never dated after it (nor before 1970),
/// and within that range every time has a month partition can be made for.
const END_UNIX_MICROS: i64 = 253_402_300_800_000_000;
/// `PGSQL_AF_INET` / `PGSQL_AF_INET6` of PostgreSQL's `inet` wire format.
const AF_INET: u8 = 2;
const AF_INET6: u8 = 3;

/// What PostgreSQL would refuse, found before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBatch {
    #[error("{records} records do not fit one batch")]
    TooManyRecords { records: usize },
    #[error("record {index}: count {count} exceeds the column's range")]
    CountOutOfRange { index: usize, count: u32 },
    #[error("record {index}: time {at_micros} µs is outside the years 1970 to 9999")]
    TimeOutOfRange { index: usize, at_micros: i64 },
}

/// The COPY data for `records`, all from `edge_id`; refuses the whole
/// batch at its first record PostgreSQL would refuse.
pub fn encode(edge_id: Uuid, records: &[UsageRecord]) -> Result<Vec<u8>, InvalidBatch> {
    // 9 columns of which most are fixed width: about 150 bytes a row.
    let mut out = Vec::with_capacity(HEADER.len() + 2 + records.len() * 160);
    out.extend_from_slice(HEADER);
    for (index, record) in records.iter().enumerate() {
        let count =
            i32::try_from(record.count.get()).map_err(|_| InvalidBatch::CountOutOfRange {
                index,
                count: record.count.get(),
            })?;
        if !(0..END_UNIX_MICROS).contains(&record.at_micros) {
            return Err(InvalidBatch::TimeOutOfRange {
                index,
                at_micros: record.at_micros,
            });
        }
        out.extend_from_slice(&COLUMNS.to_be_bytes());
        field(
            &mut out,
            &(record.at_micros - PG_EPOCH_UNIX_MICROS).to_be_bytes(),
        );
        field(&mut out, record.license_id.as_bytes());
        optional(
            &mut out,
            record.device_id.as_ref().map(|id| id.as_bytes().as_slice()),
        );
        optional(
            &mut out,
            record
                .session_id
                .as_ref()
                .map(|id| id.as_bytes().as_slice()),
        );
        field(&mut out, record.kind.as_str().as_bytes());
        field(&mut out, &count.to_be_bytes());
        field(&mut out, edge_id.as_bytes());
        optional(&mut out, record.app_version.as_deref().map(str::as_bytes));
        match record.ip {
            Some(ip) => inet(&mut out, ip),
            None => out.extend_from_slice(&NULL.to_be_bytes()),
        }
    }
    out.extend_from_slice(&TRAILER.to_be_bytes());
    Ok(out)
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = i32::try_from(bytes.len()).expect("a field is far below 2 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn optional(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => field(out, bytes),
        None => out.extend_from_slice(&NULL.to_be_bytes()),
    }
}

/// Family, prefix bits, is-cidr flag, address length, address.
fn inet(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&[AF_INET, 32, 0, 4]);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.extend_from_slice(&20i32.to_be_bytes());
            out.extend_from_slice(&[AF_INET6, 128, 0, 16]);
            out.extend_from_slice(&v6.octets());
        }
    }
}
