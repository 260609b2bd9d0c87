//! The `latchkey-client` binary on a machine made of files (a fake root
//! with sysfs, procfs and a machine id), and an offline lease signed here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use latchkey_client::LeaseFile;
use latchkey_client::fingerprint::{collect_under, protect};
use latchkey_client::shared::token::{self, Lease};
use latchkey_client::shared::{LicenseKey, SigningKeyPair};
use serde_json::Value;

struct Machine {
    dir: PathBuf,
    root: PathBuf,
}

impl Machine {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("lk-cli-{}", uuid::Uuid::new_v4()));
        let root = dir.join("root");
        for (path, text) in [
            (
                "sys/class/dmi/id/product_uuid",
                "4c4c4544-0042-3510-8052-b4c04f384d32\n",
            ),
            ("etc/machine-id", "7f2c1e0a9b8d4c3f8e2a1b0c9d8e7f6a\n"),
            (
                "proc/cpuinfo",
                "vendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 158\n",
            ),
            ("sys/class/net/eth0/address", "00:1a:2b:3c:4d:5e\n"),
        ] {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::create_dir_all(root.join("sys/class/net/eth0/device")).unwrap();
        Self { dir, root }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_latchkey-client"))
            .arg("--machine-root")
            .arg(&self.root)
            .args(args)
            .env_remove("LATCHKEY_LICENSE_KEY")
            .output()
            .unwrap()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A lease for this machine's fingerprint, cached at `dir/app.lease`, and
/// the public key file: (lease path, key path, license key).
fn lease_for(machine: &Machine, dir: &Path) -> (PathBuf, PathBuf, String) {
    let signer = SigningKeyPair::generate();
    let key = LicenseKey::generate();
    let fingerprint = protect(&collect_under(&machine.root), "").unwrap();
    let now = latchkey_client::Clock::now(&latchkey_client::SystemClock);
    let lease = Lease::issue(
        uuid::Uuid::from_u128(42),
        key.hash(),
        fingerprint.canonicalize().unwrap().hash(),
        1,
        vec!["sync".into()],
        now,
        86_400,
    );
    let (lease_path, key_path) = (dir.join("app.lease"), dir.join("public.pem"));
    LeaseFile::new(&lease_path)
        .store(&token::sign(&lease, &signer), now)
        .unwrap();
    std::fs::write(&key_path, signer.public_key_pem()).unwrap();
    (lease_path, key_path, key.to_string())
}

#[test]
fn fingerprint_prints_the_protected_components_of_the_machine() {
    let machine = Machine::new();
    let printed = json(&machine.run(&["fingerprint", "--product", "studio"]));
    let expected = protect(&collect_under(&machine.root), "studio").unwrap();
    assert_eq!(printed, serde_json::to_value(&expected).unwrap());
    let text = printed.to_string();
    assert!(
        !text.contains("4c4c4544") && !text.contains("001a2b"),
        "{text}"
    );
    assert_eq!(printed["macs"].as_array().unwrap().len(), 1);
}

#[test]
fn lease_show_and_an_offline_verify_read_the_cached_lease() {
    let machine = Machine::new();
    let (lease, public_key, key) = lease_for(&machine, &machine.dir);
    let (lease, public_key) = (lease.to_str().unwrap(), public_key.to_str().unwrap());
    let shown = json(&machine.run(&[
        "lease",
        "show",
        "--lease-file",
        lease,
        "--public-key",
        public_key,
        "--key",
        &key,
    ]));
    assert_eq!(shown["license_id"], uuid::Uuid::from_u128(42).to_string());
    assert_eq!(shown["for_license_key"], true);
    assert_eq!(shown["features"], serde_json::json!(["sync"]));

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let edge = format!("http://{closed}");
    let verified = json(&machine.run(&[
        "verify",
        "--edge",
        &edge,
        "--lease-file",
        lease,
        "--public-key",
        public_key,
        "--key",
        &key,
    ]));
    assert_eq!(
        (verified["valid"].clone(), verified["source"].clone()),
        (true.into(), "lease".into())
    );

    // Another public key: the lease is not believed.
    let other = machine.dir.join("other.pem");
    std::fs::write(&other, SigningKeyPair::generate().public_key_pem()).unwrap();
    let refused = machine.run(&[
        "lease",
        "show",
        "--lease-file",
        lease,
        "--public-key",
        other.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("does not verify"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
