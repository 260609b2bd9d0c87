//! License keys, fingerprints and tokens: property tests.

mod common;

use common::{NOW, signer, trusted};
use latchkey_shared::LicenseKey;
use latchkey_shared::fingerprint::{Fingerprint, FingerprintHash};
use latchkey_shared::key::{ENTROPY_BYTES, KeyParseError};
use latchkey_shared::signing::{SigningKeyPair, TrustedKeys};
use latchkey_shared::token::{self, Lease, SessionClaims, TokenError};
use proptest::prelude::*;
use uuid::Uuid;

const ALPHABET: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// One way a person may type a key: case, separators, look-alikes.
#[derive(Debug, Clone)]
struct Typing {
    lower: Vec<bool>,
    separators: Vec<u8>,
    look_alikes: bool,
}

fn arb_typing() -> impl Strategy<Value = Typing> {
    (
        prop::collection::vec(any::<bool>(), 25),
        prop::collection::vec(0u8..4, 25),
        any::<bool>(),
    )
        .prop_map(|(lower, separators, look_alikes)| Typing {
            lower,
            separators,
            look_alikes,
        })
}

fn type_key(key: &LicenseKey, typing: &Typing) -> String {
    let symbols: String = key.to_string().chars().filter(|c| *c != '-').collect();
    let mut out = String::new();
    for (i, mut c) in symbols.chars().enumerate() {
        if typing.look_alikes {
            c = match c {
                '0' => 'O',
                '1' => 'l',
                other => other,
            };
        }
        if typing.lower[i] {
            c = c.to_ascii_lowercase();
        }
        out.push(c);
        match typing.separators[i] {
            1 => out.push('-'),
            2 => out.push(' '),
            3 => out.push_str(" - "),
            _ => {}
        }
    }
    out
}

fn arb_lease() -> impl Strategy<Value = Lease> {
    (
        any::<u128>(),
        any::<[u8; ENTROPY_BYTES]>(),
        any::<[u8; 32]>(),
        any::<u32>(),
        prop::collection::vec("[a-z_]{1,12}", 0..5),
        0i64..4_000_000_000,
        0i64..1_000_000_000,
    )
        .prop_map(
            |(id, entropy, fp, product_id, features, issued_at, grace)| {
                Lease::issue(
                    Uuid::from_u128(id),
                    LicenseKey::from_entropy(entropy).hash(),
                    FingerprintHash(fp),
                    product_id,
                    features,
                    issued_at,
                    grace,
                )
            },
        )
}

proptest! {
    #[test]
    fn keys_parse_however_they_are_typed(entropy in any::<[u8; ENTROPY_BYTES]>(), typing in arb_typing()) {
        let key = LicenseKey::from_entropy(entropy);
        let typed = type_key(&key, &typing);
        prop_assert_eq!(typed.parse::<LicenseKey>(), Ok(key), "typed as {:?}", typed);
    }

    #[test]
    fn every_single_symbol_typo_is_caught(entropy in any::<[u8; ENTROPY_BYTES]>()) {
        let key = LicenseKey::from_entropy(entropy).to_string();
        for (i, original) in key.char_indices().filter(|(_, c)| *c != '-') {
            for typo in ALPHABET.chars().filter(|c| *c != original) {
                let mut typed = key.clone();
                typed.replace_range(i..i + 1, &typo.to_string());
                prop_assert_eq!(typed.parse::<LicenseKey>(), Err(KeyParseError::CheckMismatch), "{}", typed);
            }
        }
    }

    #[test]
    fn fingerprints_ignore_formatting(
        macs in prop::collection::btree_set(any::<[u8; 6]>(), 1..5),
        uuid in any::<u128>(),
        upper in any::<bool>(),
        reverse in any::<bool>(),
    ) {
        let macs: Vec<[u8; 6]> = macs.into_iter().filter(|m| m != &[0; 6] && m != &[0xff; 6]).collect();
        prop_assume!(!macs.is_empty());
        let plain = Fingerprint {
            system_uuid: Some(Uuid::from_u128(uuid | 1).to_string()),
            macs: macs.iter().map(hex::encode).collect(),
            ..Default::default()
        };
        let mut styled = plain.clone();
        styled.macs = macs.iter().map(|m| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")).collect();
        if upper {
            styled.macs = styled.macs.iter().map(|m| m.to_uppercase()).collect();
            styled.system_uuid = styled.system_uuid.map(|u| format!("{{{}}}", u.to_uppercase()));
        }
        if reverse {
            styled.macs.reverse();
        }
        let a = plain.canonicalize().unwrap();
        let b = styled.canonicalize().unwrap();
        prop_assert_eq!(a.hash(), b.hash());
        prop_assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn leases_round_trip(lease in arb_lease()) {
        let text = token::sign(&lease, &signer());
        prop_assert_eq!(token::verify::<Lease>(&text, &trusted(), lease.issued_at), Ok(lease));
    }

    #[test]
    fn session_tokens_round_trip(sid in any::<u128>(), lid in any::<u128>(), fp in any::<[u8; 32]>(), iat in 0i64..4_000_000_000) {
        let claims = SessionClaims {
            session_id: Uuid::from_u128(sid),
            license_id: Uuid::from_u128(lid),
            key_hash: LicenseKey::from_entropy([3; ENTROPY_BYTES]).hash(),
            fingerprint: FingerprintHash(fp),
            issued_at: iat,
            expires_at: iat + 86_400,
        };
        let text = token::sign(&claims, &signer());
        prop_assert_eq!(token::verify::<SessionClaims>(&text, &trusted(), iat), Ok(claims));
    }

}

proptest! {
    // Each case flips every bit of one token: a few cases cover plenty.
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn flipping_any_bit_of_a_lease_is_refused(lease in arb_lease()) {
        let text = token::sign(&lease, &signer()).into_bytes();
        for bit in 0..text.len() * 8 {
            let mut flipped = text.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let Ok(flipped) = String::from_utf8(flipped) else { continue };
            prop_assert!(token::verify::<Lease>(&flipped, &trusted(), lease.issued_at).is_err(), "bit {}", bit);
        }
    }
}

#[test]
fn token_errors_are_distinct() {
    let lease = Lease::issue(
        Uuid::nil(),
        LicenseKey::generate().hash(),
        FingerprintHash([1; 32]),
        1,
        vec![],
        NOW,
        60,
    );
    let text = token::sign(&lease, &signer());
    assert_eq!(
        token::verify::<Lease>(&text, &trusted(), NOW + 61),
        Err(TokenError::Expired {
            expires_at: NOW + 60
        })
    );
    assert_eq!(
        token::verify::<SessionClaims>(&text, &trusted(), NOW),
        Err(TokenError::WrongKind {
            expected: "sess",
            got: "lease".into()
        })
    );
    let stranger = TrustedKeys::new().with(SigningKeyPair::from_seed([1; 32]).verifying_key());
    assert_eq!(
        token::verify::<Lease>(&text, &stranger, NOW),
        Err(TokenError::UnknownKey(signer().id()))
    );
    assert_eq!(
        token::verify::<Lease>("lk2.lease.x.y.z", &trusted(), NOW),
        Err(TokenError::UnsupportedVersion("lk2".into()))
    );
    assert_eq!(
        token::verify::<Lease>("garbage", &trusted(), NOW),
        Err(TokenError::Malformed)
    );
    assert_eq!(
        token::verify::<Lease>(&"a".repeat(5000), &trusted(), NOW),
        Err(TokenError::TooLong)
    );
    assert!(text.len() < 450, "a lease is compact: {} bytes", text.len());
}
