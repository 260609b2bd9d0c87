//! The signed envelope around a snapshot body, and opening it.
//!
//! Layout (little-endian), 160 bytes before the body so that the body stays
//! 16-byte aligned for zero-copy access:
//!
//! | bytes   | field |
//! |---------|-------|
//! | 0..8    | magic `LTCHSNAP` |
//! | 8..10   | format version (2) |
//! | 10      | kind: 1 full, 2 delta |
//! | 11..16  | reserved, zero |
//! | 16..24  | signing key id |
//! | 24..32  | sequence |
//! | 32..40  | base sequence (delta) or 0 (full) |
//! | 40..48  | created at, unix seconds |
//! | 48..56  | expires at, unix seconds |
//! | 56..64  | body length |
//! | 64..96  | BLAKE3 digest of the body |
//! | 96..160 | Ed25519 signature over bytes 0..96 |
//! | 160..   | rkyv body |

use ed25519_dalek::Signature;
use rkyv::rancor;
use self_cell::self_cell;

use super::buffer::SnapshotBuffer;

use super::body::{ArchivedDeltaBody, ArchivedFullBody, DeltaBody};
use crate::signing::{KeyId, SigningKeyPair, TrustedKeys};

pub const MAGIC: &[u8; 8] = b"LTCHSNAP";
/// 2: device digests carry the machine id (28 bytes, were 24). 3: products
/// carry their client configuration. An edge refuses another format, cached
/// or received, and waits for a full one.
pub const FORMAT_VERSION: u16 = 3;
const SIGNED_LEN: usize = 96;
pub const HEADER_LEN: usize = SIGNED_LEN + 64;
const KIND_FULL: u8 = 1;
const KIND_DELTA: u8 = 2;

/// Full snapshot, or delta on top of the snapshot with sequence `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    Full,
    Delta { base: u64 },
}

/// What the envelope says; trustworthy once [`open`] returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub key_id: KeyId,
    pub sequence: u64,
    pub kind: SnapshotKind,
    pub created_at: i64,
    pub expires_at: i64,
    pub body_len: u64,
}

/// Why a snapshot was refused. Each rule has its own variant; none panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("snapshot truncated: {len} bytes where {needed} are needed")]
    Truncated { len: usize, needed: usize },
    #[error("snapshot has {extra} bytes after its body")]
    TrailingBytes { extra: usize },
    #[error("not a Latchkey snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot format version {0} is not supported")]
    UnsupportedFormat(u16),
    #[error("malformed snapshot header: {0}")]
    MalformedHeader(&'static str),
    #[error("snapshot signed by key {0}, which is not trusted")]
    UnknownKey(KeyId),
    #[error("snapshot signature does not verify")]
    BadSignature,
    #[error("snapshot body does not match its signed digest")]
    DigestMismatch,
    #[error("snapshot expired at {expires_at} (now {now})")]
    Expired { expires_at: i64, now: i64 },
    #[error("snapshot sequence {got} is not newer than the held {held}")]
    NotNewer { held: u64, got: u64 },
    #[error("delta applies to sequence {base}, but the held sequence is {held:?}")]
    WrongBase { base: u64, held: Option<u64> },
    #[error("malformed snapshot body: {0}")]
    MalformedBody(String),
}

/// What to stamp on a body when sealing it.
#[derive(Debug, Clone, Copy)]
pub struct SealParams {
    pub sequence: u64,
    pub kind: SnapshotKind,
    pub created_at: i64,
    pub expires_at: i64,
}

type FullBodyRef<'a> = &'a ArchivedFullBody;

self_cell!(
    /// The verified bytes of a full snapshot and the validated archive in them.
    pub(crate) struct FullCell {
        owner: SnapshotBuffer,
        #[covariant]
        dependent: FullBodyRef,
    }
);

/// A verified full snapshot, read in place.
pub struct FullSnapshot {
    pub meta: SnapshotMeta,
    pub(crate) cell: FullCell,
}

/// A verified delta, decoded.
#[derive(Debug)]
pub struct DeltaSnapshot {
    pub meta: SnapshotMeta,
    pub body: DeltaBody,
}

#[derive(Debug)]
pub enum Opened {
    Full(FullSnapshot),
    Delta(DeltaSnapshot),
}

impl std::fmt::Debug for FullSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FullSnapshot")
            .field("meta", &self.meta)
            .field("licenses", &self.body().license_count.to_native())
            .finish()
    }
}

impl FullSnapshot {
    pub(crate) fn body(&self) -> &ArchivedFullBody {
        self.cell.borrow_dependent()
    }

    /// Size of the whole signed snapshot in bytes.
    pub fn byte_len(&self) -> usize {
        self.cell.borrow_owner().len()
    }

    /// The signed bytes, as received: what an edge caches on disk.
    pub fn as_bytes(&self) -> &[u8] {
        self.cell.borrow_owner()
    }
}

impl Opened {
    pub fn meta(&self) -> &SnapshotMeta {
        match self {
            Self::Full(full) => &full.meta,
            Self::Delta(delta) => &delta.meta,
        }
    }
}

/// Signs `body` (rkyv bytes) into a complete snapshot. The builders call
/// this; it is public so tools and tests can seal bodies of their own.
pub fn seal(body: &[u8], signer: &SigningKeyPair, params: SealParams) -> Vec<u8> {
    let (kind, base) = match params.kind {
        SnapshotKind::Full => (KIND_FULL, 0),
        SnapshotKind::Delta { base } => (KIND_DELTA, base),
    };
    let mut header = [0u8; SIGNED_LEN];
    header[0..8].copy_from_slice(MAGIC);
    header[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[10] = kind;
    header[16..24].copy_from_slice(&signer.id().0);
    header[24..32].copy_from_slice(&params.sequence.to_le_bytes());
    header[32..40].copy_from_slice(&base.to_le_bytes());
    header[40..48].copy_from_slice(&params.created_at.to_le_bytes());
    header[48..56].copy_from_slice(&params.expires_at.to_le_bytes());
    header[56..64].copy_from_slice(&(body.len() as u64).to_le_bytes());
    header[64..96].copy_from_slice(blake3::hash(body).as_bytes());
    let signature = signer.sign(&header);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&signature.to_bytes());
    out.extend_from_slice(body);
    out
}

/// Verifies and opens a snapshot.
///
/// `held` is the sequence the caller holds now: a full snapshot must be
/// newer, a delta must name it as its base. `now` is unix seconds.
pub fn open(
    bytes: SnapshotBuffer,
    trusted: &TrustedKeys,
    held: Option<u64>,
    now: i64,
) -> Result<Opened, OpenError> {
    let meta = verify(&bytes, trusted)?;
    if now > meta.expires_at {
        return Err(OpenError::Expired {
            expires_at: meta.expires_at,
            now,
        });
    }
    match meta.kind {
        SnapshotKind::Full => {
            if let Some(held) = held.filter(|h| meta.sequence <= *h) {
                return Err(OpenError::NotNewer {
                    held,
                    got: meta.sequence,
                });
            }
            let cell = FullCell::try_new(bytes, |bytes| {
                let body = rkyv::access::<ArchivedFullBody, rancor::Error>(&bytes[HEADER_LEN..])
                    .map_err(|e| OpenError::MalformedBody(e.to_string()))?;
                body.check_invariants()
                    .map_err(|e| OpenError::MalformedBody(e.to_owned()))?;
                Ok::<_, OpenError>(body)
            })?;
            Ok(Opened::Full(FullSnapshot { meta, cell }))
        }
        SnapshotKind::Delta { base } => {
            if held != Some(base) {
                return Err(OpenError::WrongBase { base, held });
            }
            let archived = rkyv::access::<ArchivedDeltaBody, rancor::Error>(&bytes[HEADER_LEN..])
                .map_err(|e| OpenError::MalformedBody(e.to_string()))?;
            let body = rkyv::deserialize::<DeltaBody, rancor::Error>(archived)
                .map_err(|e| OpenError::MalformedBody(e.to_string()))?;
            Ok(Opened::Delta(DeltaSnapshot { meta, body }))
        }
    }
}

/// Header, signature, length and digest: everything but the body's structure.
fn verify(bytes: &[u8], trusted: &TrustedKeys) -> Result<SnapshotMeta, OpenError> {
    if bytes.len() < HEADER_LEN {
        return Err(OpenError::Truncated {
            len: bytes.len(),
            needed: HEADER_LEN,
        });
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let i64_at = |at: usize| i64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if &bytes[0..8] != MAGIC {
        return Err(OpenError::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != FORMAT_VERSION {
        return Err(OpenError::UnsupportedFormat(version));
    }
    if bytes[11..16].iter().any(|b| *b != 0) {
        return Err(OpenError::MalformedHeader("reserved bytes are not zero"));
    }
    let kind = match (bytes[10], u64_at(32)) {
        (KIND_FULL, 0) => SnapshotKind::Full,
        (KIND_FULL, _) => return Err(OpenError::MalformedHeader("a full snapshot has no base")),
        (KIND_DELTA, base) => SnapshotKind::Delta { base },
        _ => return Err(OpenError::MalformedHeader("unknown snapshot kind")),
    };
    let key_id = KeyId(bytes[16..24].try_into().expect("8 bytes"));
    let key = trusted.get(&key_id).ok_or(OpenError::UnknownKey(key_id))?;
    let signature =
        Signature::from_bytes(bytes[SIGNED_LEN..HEADER_LEN].try_into().expect("64 bytes"));
    key.verify_strict(&bytes[..SIGNED_LEN], &signature)
        .map_err(|_| OpenError::BadSignature)?;

    let meta = SnapshotMeta {
        key_id,
        sequence: u64_at(24),
        kind,
        created_at: i64_at(40),
        expires_at: i64_at(48),
        body_len: u64_at(56),
    };
    if let SnapshotKind::Delta { base } = kind
        && meta.sequence <= base
    {
        return Err(OpenError::MalformedHeader(
            "a delta must be newer than its base",
        ));
    }
    let needed = usize::try_from(meta.body_len)
        .ok()
        .and_then(|n| n.checked_add(HEADER_LEN))
        .ok_or(OpenError::MalformedHeader("body length overflows"))?;
    if bytes.len() < needed {
        return Err(OpenError::Truncated {
            len: bytes.len(),
            needed,
        });
    }
    if bytes.len() > needed {
        return Err(OpenError::TrailingBytes {
            extra: bytes.len() - needed,
        });
    }
    if blake3::hash(&bytes[HEADER_LEN..]).as_bytes() != &bytes[64..96] {
        return Err(OpenError::DigestMismatch);
    }
    Ok(meta)
}
