//! Snapshot lookup and open+verify at 1M and 10M licenses.
//!
//! `lookup` starts from the key as a client sends it (a string), so it
//! includes parsing, the check symbol and BLAKE3. It races against
//! `std_hashmap`, a std `HashMap<KeyHash, u32>` over the same keys: the
//! in-memory index most services would reach for. `open_verify` races
//! against `blake3_only`, hashing the same bytes: the floor any verified
//! open has to pay. `parse_and_hash_only` is the share of a lookup spent
//! before the index is touched; `random_read_floor` is one random read from
//! memory of the snapshot's size, the least any in-memory index can cost. Sizes are printed before the timings.
//!
//! Run: `cargo bench -p latchkey-shared --bench snapshot` (LATCHKEY_BENCH_SIZES=1000000 to pick sizes).

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use latchkey_shared::fingerprint::{DeviceDigest, Fingerprint};
use latchkey_shared::key::ENTROPY_BYTES;
use latchkey_shared::signing::{SigningKeyPair, TrustedKeys};
use latchkey_shared::snapshot::{
    EdgeConfig, LicenseEntry, LicenseKind, LicenseStatus, Opened, Policy, SnapshotBuffer,
    SnapshotBuilder, SnapshotState, open,
};
use latchkey_shared::{KeyHash, LicenseKey};
use uuid::Uuid;

const NOW: i64 = 1_790_000_000;
const SAMPLE_KEYS: usize = 1 << 16;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn key(n: u64) -> LicenseKey {
    let mut entropy = [0u8; ENTROPY_BYTES];
    entropy[..8].copy_from_slice(&splitmix(n).to_le_bytes());
    entropy[8..].copy_from_slice(&splitmix(n ^ 0xABCD).to_le_bytes()[..7]);
    LicenseKey::from_entropy(entropy)
}

fn device(n: u64) -> [u8; DeviceDigest::BYTES] {
    let mac = splitmix(n).to_le_bytes();
    Fingerprint {
        system_uuid: Some(Uuid::from_u64_pair(splitmix(n + 1), splitmix(n + 2)).to_string()),
        cpu_id: Some(format!("BFEBFBFF{:08X}", n % 64)),
        macs: vec![hex::encode(&mac[..6])],
        ..Default::default()
    }
    .canonicalize()
    .expect("valid fingerprint")
    .digest()
    .to_bytes()
}

fn policies() -> Vec<Policy> {
    let features = [
        vec![],
        vec!["export".to_owned()],
        vec!["export".to_owned(), "sync".to_owned(), "teams".to_owned()],
    ];
    features
        .into_iter()
        .enumerate()
        .map(|(i, features)| Policy {
            features,
            allow_session_takeover: i == 1,
            ..Policy::default()
        })
        .collect()
}

/// A snapshot of `n` licenses, each with two activated devices.
fn build(n: usize, signer: &SigningKeyPair) -> Vec<u8> {
    let policies = policies();
    let mut builder = SnapshotBuilder::with_capacity(EdgeConfig::default(), n);
    for i in 0..n as u64 {
        let entry = LicenseEntry {
            key_hash: key(i).hash().0,
            license_id: Uuid::from_u64_pair(i, splitmix(i)),
            status: LicenseStatus::Active,
            kind: LicenseKind::Full,
            valid_from: NOW - 86_400,
            valid_until: Some(NOW + 365 * 86_400),
            product_id: (i % 4) as u32,
            device_limit: 3,
            session_limit: 1,
            usage_exhausted: false,
            devices: vec![device(2 * i), device(2 * i + 1)],
            policy: policies[(i % 3) as usize].clone(),
        };
        builder.add_license(&entry).expect("unique keys");
    }
    builder
        .seal(signer, 1, NOW, NOW + 7 * 86_400)
        .expect("sealed")
}

fn copy(bytes: &[u8]) -> SnapshotBuffer {
    SnapshotBuffer::from_slice(bytes).expect("memory for the snapshot")
}

fn bench_size(c: &mut Criterion, n: usize) {
    let signer = SigningKeyPair::from_seed([1; 32]);
    let trusted = TrustedKeys::new().with(signer.verifying_key());
    let started = std::time::Instant::now();
    let bytes = build(n, &signer);
    println!(
        "snapshot of {n} licenses (2 devices each): {} bytes, {:.1} bytes/license, built and signed in {:.2?}",
        bytes.len(),
        bytes.len() as f64 / n as f64,
        started.elapsed()
    );
    let label = if n >= 1_000_000 {
        format!("{}M", n / 1_000_000)
    } else {
        n.to_string()
    };

    let mut group = c.benchmark_group(format!("open_verify/{label}"));
    group.sample_size(10);
    group.bench_function("open_verify", |b| {
        b.iter_batched(
            || copy(&bytes),
            |bytes| black_box(open(bytes, &trusted, None, NOW).expect("opens")),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("blake3_only", |b| {
        b.iter(|| black_box(blake3::hash(&bytes)))
    });
    group.finish();

    // The floor: one random byte read from a buffer as large as the snapshot,
    // in the same kind of memory, each read's address depending on the last
    // (as a lookup's address depends on the key's hash), so reads cannot
    // overlap. Any index that touches memory once pays it.
    let floor = copy(&bytes);
    let mut group = c.benchmark_group(format!("lookup/{label}"));
    let mut j = 0u64;
    group.bench_function("random_read_floor", |b| {
        b.iter(|| {
            j = splitmix(j) ^ u64::from(floor[(j % floor.len() as u64) as usize]);
            black_box(j)
        })
    });
    group.finish();
    drop(floor);

    let Ok(Opened::Full(full)) = open(copy(&bytes), &trusted, None, NOW) else {
        panic!("snapshot opens")
    };
    drop(bytes);
    let state = SnapshotState::new(full);
    // Keys spread over the whole snapshot, looked up in an order that defeats the cache.
    let sample: Vec<String> = (0..SAMPLE_KEYS as u64)
        .map(|i| key(splitmix(i) % n as u64).to_string())
        .collect();

    let mut group = c.benchmark_group(format!("lookup/{label}"));
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("snapshot", |b| {
        b.iter(|| {
            i = (i + 1) & (SAMPLE_KEYS - 1);
            let key: LicenseKey = sample[i].parse().expect("valid key");
            black_box(state.license(&key.hash()).expect("present").status())
        })
    });
    group.bench_function("parse_and_hash_only", |b| {
        b.iter(|| {
            i = (i + 1) & (SAMPLE_KEYS - 1);
            let key: LicenseKey = sample[i].parse().expect("valid key");
            black_box(key.hash())
        })
    });
    drop(state);
    let map: HashMap<KeyHash, u32> = (0..n as u64).map(|i| (key(i).hash(), i as u32)).collect();
    group.bench_function("std_hashmap", |b| {
        b.iter(|| {
            i = (i + 1) & (SAMPLE_KEYS - 1);
            let key: LicenseKey = sample[i].parse().expect("valid key");
            black_box(*map.get(&key.hash()).expect("present"))
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let sizes = std::env::var("LATCHKEY_BENCH_SIZES").unwrap_or_else(|_| "1000000,10000000".into());
    for size in sizes.split(',') {
        bench_size(
            c,
            size.trim()
                .parse()
                .expect("LATCHKEY_BENCH_SIZES is a list of counts"),
        );
    }
}

criterion_group!(snapshot, benches);
criterion_main!(snapshot);
