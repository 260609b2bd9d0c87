//! The offline lease, cached on disk: the signed token an activation, a
//! transfer or a lease refresh returned, and the latest time it was seen at.
//!
//! The file is JSON, written atomically (a `0600` temporary file in the same
//! directory, synced, renamed over the old one), so a crash leaves the old
//! lease or the new one, never half of either, and other users cannot read
//! it. The token is checked with the vendor's public key every time: a file
//! edited by hand fails its signature.
//!
//! Clock rollback: `last_seen` is the latest time this lease was checked at
//! (online or offline; written at most once a minute), and the lease's own
//! signed `issued_at` is a floor no edit of the file can lower. A clock
//! earlier than the later of the two by more than the tolerance ends the
//! offline grace, and the file remembers that until an edge issues a new
//! lease. Known limit: `last_seen` is not signed (the client holds no
//! secret), so a user who edits it back can only return to the lease's
//! `issued_at`, not before.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use latchkey_shared::token::{self, Lease};
use latchkey_shared::{FingerprintHash, KeyHash, TrustedKeys};
use serde::{Deserialize, Serialize};

use crate::error::LeaseError;

/// `last_seen` is written when it moves on by this much: verify may run
/// many times a second, and a minute is far below any sensible tolerance.
const LAST_SEEN_STEP_SECS: i64 = 60;
const FORMAT: u32 = 1;

/// The lease cache at a path the vendor chooses.
#[derive(Debug, Clone)]
pub struct LeaseFile {
    path: PathBuf,
}

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachedLease {
    pub format: u32,
    /// The signed token (`lk1.lease.…`).
    pub lease: String,
    /// The latest time (Unix seconds) the lease was checked at.
    pub last_seen: i64,
    /// When the clock was found set back: the grace is over until a new lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_ended_at: Option<i64>,
}

/// What a lease check needs to know of the caller.
#[derive(Debug, Clone, Copy)]
pub struct LeaseCheck<'a> {
    pub trusted: &'a TrustedKeys,
    pub key: &'a KeyHash,
    pub fingerprint: &'a FingerprintHash,
    pub now: i64,
    pub tolerance_secs: i64,
}

impl LeaseFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached lease, `None` when there is no file.
    pub fn read(&self) -> Result<Option<CachedLease>, LeaseError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(self.io(error)),
        };
        let cached: CachedLease =
            serde_json::from_slice(&bytes).map_err(|e| LeaseError::Corrupt(e.to_string()))?;
        if cached.format != FORMAT {
            return Err(LeaseError::Corrupt(format!(
                "format {} (this client reads {FORMAT})",
                cached.format
            )));
        }
        Ok(Some(cached))
    }

    /// Caches a lease an edge just issued: a fresh start for the clock check.
    pub fn store(&self, lease: &str, now: i64) -> Result<(), LeaseError> {
        let last_seen = self
            .read()
            .ok()
            .flatten()
            .map_or(now, |old| old.last_seen.max(now));
        self.write(&CachedLease {
            format: FORMAT,
            lease: lease.to_owned(),
            last_seen,
            grace_ended_at: None,
        })
    }

    /// Forgets the lease (the seat was given up, or the license refused).
    pub fn remove(&self) -> Result<(), LeaseError> {
        match fs::remove_file(&self.path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(self.io(error)),
            _ => Ok(()),
        }
    }

    /// Checks the cached lease: signature, expiry, license, machine, clock.
    /// Moves `last_seen` forward, and records a clock set back.
    pub fn check(&self, check: LeaseCheck<'_>) -> Result<Lease, LeaseError> {
        let mut cached = self.read()?.ok_or(LeaseError::Missing)?;
        if let Some(at) = cached.grace_ended_at {
            return Err(LeaseError::GraceEnded { at });
        }
        // Signature first: nothing of an unverified token is believed.
        // (`i64::MIN`: the expiry is judged below, after the clock.)
        let lease: Lease = token::verify(&cached.lease, check.trusted, i64::MIN)?;
        if lease.key_hash != *check.key {
            return Err(LeaseError::OtherLicense);
        }
        if lease.fingerprint != *check.fingerprint {
            return Err(LeaseError::OtherMachine);
        }
        let floor = cached.last_seen.max(lease.issued_at);
        if check.now < floor - check.tolerance_secs {
            cached.grace_ended_at = Some(check.now);
            self.write(&cached)?;
            return Err(LeaseError::ClockMovedBack {
                now: check.now,
                last_seen: floor,
            });
        }
        if check.now > lease.valid_until {
            return Err(LeaseError::Expired {
                valid_until: lease.valid_until,
            });
        }
        self.saw(&mut cached, check.now)?;
        Ok(lease)
    }

    /// Records that the lease was in use at `now` (an online answer too).
    pub fn touch(&self, now: i64) -> Result<(), LeaseError> {
        match self.read()? {
            Some(mut cached) => self.saw(&mut cached, now),
            None => Ok(()),
        }
    }

    fn saw(&self, cached: &mut CachedLease, now: i64) -> Result<(), LeaseError> {
        if now >= cached.last_seen + LAST_SEEN_STEP_SECS {
            cached.last_seen = now;
            self.write(cached)?;
        }
        Ok(())
    }

    fn write(&self, cached: &CachedLease) -> Result<(), LeaseError> {
        let bytes = serde_json::to_vec_pretty(cached).expect("a lease cache serializes");
        write_atomically(&self.path, &bytes).map_err(|e| self.io(e))
    }

    fn io(&self, error: std::io::Error) -> LeaseError {
        LeaseError::Io {
            path: self.path.display().to_string(),
            error,
        }
    }
}

/// A `0600` temporary file beside `path`, synced, then renamed over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written?;
    // The rename itself is durable once the directory is synced.
    #[cfg(unix)]
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use latchkey_shared::{Fingerprint, LicenseKey, SigningKeyPair};
    use uuid::Uuid;

    use super::*;

    const DAY: i64 = 86_400;
    const NOW: i64 = 1_800_000_000;

    struct Fixture {
        file: LeaseFile,
        signer: SigningKeyPair,
        trusted: TrustedKeys,
        key: KeyHash,
        machine: FingerprintHash,
    }

    fn fixture() -> Fixture {
        let dir = std::env::temp_dir().join(format!("lk-lease-{}", Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        let signer = SigningKeyPair::generate();
        let trusted = TrustedKeys::new().with(signer.verifying_key());
        let machine = Fingerprint {
            machine_id: Some("0123456789abcdef0123456789abcdef".into()),
            ..Fingerprint::default()
        };
        Fixture {
            file: LeaseFile::new(dir.join("app.lease")),
            signer,
            trusted,
            key: LicenseKey::generate().hash(),
            machine: machine.canonicalize().unwrap().hash(),
        }
    }

    impl Fixture {
        fn issue(&self, issued_at: i64) -> String {
            let lease = Lease::issue(
                Uuid::new_v4(),
                self.key,
                self.machine,
                1,
                vec!["sync".into()],
                issued_at,
                7 * DAY,
            );
            token::sign(&lease, &self.signer)
        }

        fn check(&self, now: i64) -> Result<Lease, LeaseError> {
            self.file.check(LeaseCheck {
                trusted: &self.trusted,
                key: &self.key,
                fingerprint: &self.machine,
                now,
                tolerance_secs: 600,
            })
        }
    }

    #[test]
    fn the_file_is_private_and_replaced_whole() {
        let f = fixture();
        f.file.store(&f.issue(NOW), NOW).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(f.file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        f.file.store(&f.issue(NOW + 10), NOW + 10).unwrap();
        let dir = f.file.path().parent().unwrap();
        let names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("app.lease")],
            "no temporary left"
        );
        assert_eq!(f.check(NOW + 20).unwrap().issued_at, NOW + 10);
    }

    #[test]
    fn grace_runs_to_the_lease_end_and_not_past_it() {
        let f = fixture();
        assert!(matches!(f.check(NOW), Err(LeaseError::Missing)));
        f.file.store(&f.issue(NOW), NOW).unwrap();
        assert!(f.check(NOW + 6 * DAY).is_ok());
        assert!(matches!(
            f.check(NOW + 7 * DAY + 1),
            Err(LeaseError::Expired { valid_until }) if valid_until == NOW + 7 * DAY
        ));
    }

    #[test]
    fn a_clock_set_back_ends_the_grace_until_a_new_lease() {
        let f = fixture();
        f.file.store(&f.issue(NOW), NOW).unwrap();
        assert!(f.check(NOW + 2 * DAY).is_ok());
        // Within the tolerance of the latest time seen: fine.
        assert!(f.check(NOW + 2 * DAY - 500).is_ok());
        assert!(matches!(
            f.check(NOW + DAY),
            Err(LeaseError::ClockMovedBack { last_seen, .. }) if last_seen == NOW + 2 * DAY
        ));
        // Moving it forward again does not bring the grace back.
        assert!(matches!(
            f.check(NOW + 3 * DAY),
            Err(LeaseError::GraceEnded { .. })
        ));
        f.file
            .store(&f.issue(NOW + 3 * DAY), NOW + 3 * DAY)
            .unwrap();
        assert!(f.check(NOW + 3 * DAY).is_ok());
    }

    #[test]
    fn an_edited_last_seen_cannot_go_below_the_signed_issue_time() {
        let f = fixture();
        f.file.store(&f.issue(NOW), NOW).unwrap();
        let mut cached = f.file.read().unwrap().unwrap();
        cached.last_seen = 0;
        f.file.write(&cached).unwrap();
        assert!(matches!(
            f.check(NOW - DAY),
            Err(LeaseError::ClockMovedBack { last_seen: NOW, .. })
        ));
    }

    #[test]
    fn a_tampered_or_foreign_lease_is_refused() {
        let f = fixture();
        let token = f.issue(NOW);
        // The payload's expiry pushed a year out, signature kept.
        let parts: Vec<&str> = token.split('.').collect();
        let payload = base64_json(parts[3]).replace(
            &format!("\"exp\":{}", NOW + 7 * DAY),
            &format!("\"exp\":{}", NOW + 365 * DAY),
        );
        let forged = [parts[0], parts[1], parts[2], &encode(&payload), parts[4]].join(".");
        f.file.store(&forged, NOW).unwrap();
        assert!(
            matches!(f.check(NOW), Err(LeaseError::Token(_))),
            "{:?}",
            f.check(NOW)
        );
        // Signed by a key the vendor did not embed.
        let other = Fixture {
            signer: SigningKeyPair::generate(),
            ..fixture()
        };
        other.file.store(&other.issue(NOW), NOW).unwrap();
        assert!(matches!(other.check(NOW), Err(LeaseError::Token(_))));
        fs::write(f.file.path(), b"{not json").unwrap();
        assert!(matches!(f.check(NOW), Err(LeaseError::Corrupt(_))));
    }

    #[test]
    fn a_lease_of_another_machine_or_license_is_refused() {
        let f = fixture();
        f.file.store(&f.issue(NOW), NOW).unwrap();
        let elsewhere = Fingerprint {
            machine_id: Some("fedcba9876543210fedcba9876543210".into()),
            ..Fingerprint::default()
        };
        let check = |key: &KeyHash, machine: &FingerprintHash| {
            f.file.check(LeaseCheck {
                trusted: &f.trusted,
                key,
                fingerprint: machine,
                now: NOW,
                tolerance_secs: 600,
            })
        };
        let other_machine = elsewhere.canonicalize().unwrap().hash();
        assert!(matches!(
            check(&f.key, &other_machine),
            Err(LeaseError::OtherMachine)
        ));
        let other_key = LicenseKey::generate().hash();
        assert!(matches!(
            check(&other_key, &f.machine),
            Err(LeaseError::OtherLicense)
        ));
    }

    fn base64_json(part: &str) -> String {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        String::from_utf8(bytes).unwrap()
    }

    fn encode(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }
}
