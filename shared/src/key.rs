//! License keys: what a customer types in, and the hash every other part of
//! the system knows the key by.
//!
//! A key is 24 data symbols of Crockford base32 (120 bits from the OS CSPRNG)
//! and one check symbol, shown as five groups of five:
//! `7KQ2M-X0RDT-9HF3W-BC4NE-8YVPG`. The check symbol is Luhn mod 32 over the
//! data symbols, which catches every single-symbol typo and almost every swap
//! of two neighbours before any network call is made.
//!
//! Parsing forgives what people do when they copy keys: any case, spaces or
//! dashes anywhere (or none), and the Crockford look-alikes `I`/`L` for `1`
//! and `O` for `0`.
//!
//! A key migrated from another licensing system that does not parse as ours
//! is a [`LegacyKey`]: kept exactly as issued and hashed under a context of
//! its own, so an edge that cannot parse a key it is given can still find it.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

/// Crockford's base32 alphabet: digits and letters without I, L, O, U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Data symbols in a key: 24 × 5 bits = 120 bits of entropy.
pub const DATA_SYMBOLS: usize = 24;
/// Data symbols plus the check symbol.
pub const KEY_SYMBOLS: usize = DATA_SYMBOLS + 1;
/// Symbols in a group of a written key; the first group is what lists show.
pub const GROUP: usize = 5;
/// Bytes of CSPRNG output behind one key (120 bits).
pub const ENTROPY_BYTES: usize = 15;
/// BLAKE3 derive-key context of the key that key hashes are keyed with, so
/// they cannot collide with any other hash in the system.
const KEY_HASH_CONTEXT: &str = "latchkey 2026-11 license key hash v1";
/// Derived once: a keyed hash then costs one BLAKE3 compression per key.
static KEY_HASH_KEY: LazyLock<[u8; 32]> =
    LazyLock::new(|| blake3::derive_key(KEY_HASH_CONTEXT, b""));
/// The derive-key context of legacy keys' hash key: a legacy key's hash can
/// never equal a key of ours.
const LEGACY_KEY_HASH_CONTEXT: &str = "latchkey 2026-12 legacy license key hash v1";
static LEGACY_KEY_HASH_KEY: LazyLock<[u8; 32]> =
    LazyLock::new(|| blake3::derive_key(LEGACY_KEY_HASH_CONTEXT, b""));
/// Shortest and longest legacy key accepted, in characters.
pub const LEGACY_KEY_CHARS: std::ops::RangeInclusive<usize> = 6..=128;
/// Symbol value of every ASCII byte (`INVALID` where none).
const DECODE: [u8; 128] = decode_table();
const INVALID: u8 = 0xff;

/// A well-formed license key (its check symbol is right). Holds symbol values 0..32.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LicenseKey([u8; KEY_SYMBOLS]);

/// Why a string is not a license key. `position` counts symbols from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    #[error("a license key has {KEY_SYMBOLS} symbols, this one has {0}")]
    WrongLength(usize),
    #[error("'{character}' at symbol {position} is not a license key character")]
    InvalidCharacter { character: char, position: usize },
    #[error("the license key has a typo: its check symbol does not match")]
    CheckMismatch,
}

impl LicenseKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut entropy = [0u8; ENTROPY_BYTES];
        OsRng.fill_bytes(&mut entropy);
        Self::from_entropy(entropy)
    }

    /// The key whose 120 data bits are `entropy`. Deterministic: for tests,
    /// benchmarks and demo data; real keys come from [`LicenseKey::generate`].
    pub fn from_entropy(entropy: [u8; ENTROPY_BYTES]) -> Self {
        let bits = entropy
            .iter()
            .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
        let mut symbols = [0u8; KEY_SYMBOLS];
        for (i, symbol) in symbols[..DATA_SYMBOLS].iter_mut().enumerate() {
            let shift = 5 * (DATA_SYMBOLS - 1 - i);
            *symbol = ((bits >> shift) & 0x1f) as u8;
        }
        symbols[DATA_SYMBOLS] = check_symbol(&symbols[..DATA_SYMBOLS]);
        Self(symbols)
    }

    /// The hash edges and the database index the key by.
    pub fn hash(&self) -> KeyHash {
        let mut canonical = [0u8; KEY_SYMBOLS];
        for (c, s) in canonical.iter_mut().zip(self.0) {
            *c = ALPHABET[usize::from(s)];
        }
        KeyHash(*blake3::keyed_hash(&KEY_HASH_KEY, &canonical).as_bytes())
    }

    /// The first group, for logs and admin lists where the whole key must not appear.
    pub fn prefix(&self) -> String {
        self.0[..GROUP]
            .iter()
            .map(|s| char::from(ALPHABET[usize::from(*s)]))
            .collect()
    }
}

impl FromStr for LicenseKey {
    type Err = KeyParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let mut symbols = [0u8; KEY_SYMBOLS];
        let mut count = 0usize;
        for character in input.chars() {
            if matches!(character, '-' | ' ' | '\t') {
                continue;
            }
            let value = symbol_value(character).ok_or(KeyParseError::InvalidCharacter {
                character,
                position: count + 1,
            })?;
            if count < KEY_SYMBOLS {
                symbols[count] = value;
            }
            count += 1;
        }
        if count != KEY_SYMBOLS {
            return Err(KeyParseError::WrongLength(count));
        }
        if check_symbol(&symbols[..DATA_SYMBOLS]) != symbols[DATA_SYMBOLS] {
            return Err(KeyParseError::CheckMismatch);
        }
        Ok(Self(symbols))
    }
}

impl fmt::Display for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 && i % GROUP == 0 {
                f.write_str("-")?;
            }
            write!(f, "{}", char::from(ALPHABET[usize::from(*s)]))?;
        }
        Ok(())
    }
}

/// Keys are secrets: Debug shows only the first group.
impl fmt::Debug for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LicenseKey({}-…)", self.prefix())
    }
}

impl Serialize for LicenseKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LicenseKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A license key issued by another system, imported as it was issued: the
/// edges verify it by its hash like any key. Compared exactly (case
/// included) after trimming surrounding whitespace, since the other system's
/// rules of equivalence are unknown.
#[derive(Clone, PartialEq, Eq)]
pub struct LegacyKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyKeyError {
    #[error("a legacy key has {min} to {max} characters, this one has {0}", min = LEGACY_KEY_CHARS.start(), max = LEGACY_KEY_CHARS.end())]
    WrongLength(usize),
    #[error("a legacy key is printable ASCII without spaces; character {0} is not")]
    InvalidCharacter(usize),
}

impl LegacyKey {
    pub fn parse(text: &str) -> Result<Self, LegacyKeyError> {
        let text = text.trim();
        let length = text.chars().count();
        if !LEGACY_KEY_CHARS.contains(&length) {
            return Err(LegacyKeyError::WrongLength(length));
        }
        if let Some(position) = text.chars().position(|c| !c.is_ascii_graphic()) {
            return Err(LegacyKeyError::InvalidCharacter(position + 1));
        }
        Ok(Self(text.to_owned()))
    }

    /// The hash edges and the database index the key by.
    pub fn hash(&self) -> KeyHash {
        KeyHash(*blake3::keyed_hash(&LEGACY_KEY_HASH_KEY, self.0.as_bytes()).as_bytes())
    }

    /// What lists show: up to the first dash, at most [`GROUP`] characters.
    pub fn prefix(&self) -> String {
        self.0
            .split('-')
            .next()
            .unwrap_or_default()
            .chars()
            .take(GROUP)
            .collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Keys are secrets: Debug shows only the prefix.
impl fmt::Debug for LegacyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LegacyKey({}…)", self.prefix())
    }
}

/// A key as a client presents it: one of ours when it parses as ours, else
/// a legacy key (which an edge answers for only when an import brought it;
/// otherwise the error of our format is the helpful one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKey {
    Ours(LicenseKey),
    Legacy(LegacyKey),
}

impl ClientKey {
    pub fn hash(&self) -> KeyHash {
        match self {
            Self::Ours(key) => key.hash(),
            Self::Legacy(key) => key.hash(),
        }
    }
}

impl From<LicenseKey> for ClientKey {
    fn from(key: LicenseKey) -> Self {
        Self::Ours(key)
    }
}

impl FromStr for ClientKey {
    /// Our format's error: a text that is neither ours nor a legacy key was
    /// most likely meant as ours.
    type Err = KeyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.parse::<LicenseKey>() {
            Ok(key) => Ok(Self::Ours(key)),
            Err(error) => LegacyKey::parse(text).map(Self::Legacy).map_err(|_| error),
        }
    }
}

/// BLAKE3 of the canonical key. The only form in which a key leaves control.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyHash(pub [u8; 32]);

/// The hash is uniform already: hash maps need only its first eight bytes.
impl std::hash::Hash for KeyHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes")));
    }
}

crate::digest::hex_digest!(KeyHash);

fn symbol_value(character: char) -> Option<u8> {
    let value = *DECODE.get(character as usize)?;
    (value != INVALID).then_some(value)
}

const fn decode_table() -> [u8; 128] {
    let mut table = [INVALID; 128];
    let mut i = 0;
    while i < 32 {
        let symbol = ALPHABET[i];
        table[symbol as usize] = i as u8;
        table[symbol.to_ascii_lowercase() as usize] = i as u8;
        i += 1;
    }
    // Crockford's look-alikes.
    table[b'I' as usize] = 1;
    table[b'i' as usize] = 1;
    table[b'L' as usize] = 1;
    table[b'l' as usize] = 1;
    table[b'O' as usize] = 0;
    table[b'o' as usize] = 0;
    table
}

/// Luhn mod 32 over symbol values: doubling every second symbol from the
/// right makes every single substitution change the sum modulo 32.
fn check_symbol(data: &[u8]) -> u8 {
    let mut sum = 0u32;
    for (i, value) in data.iter().rev().enumerate() {
        let mut addend = u32::from(*value);
        if i % 2 == 0 {
            addend *= 2;
            addend = addend / 32 + addend % 32;
        }
        sum += addend;
    }
    ((32 - sum % 32) % 32) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_keys_are_exact_and_hashed_apart_from_ours() {
        let key = LegacyKey::parse("  ABCD-1234-efgh ").unwrap();
        assert_eq!(key.as_str(), "ABCD-1234-efgh");
        assert_eq!(key.prefix(), "ABCD");
        assert_eq!(
            key.hash(),
            LegacyKey::parse("ABCD-1234-efgh").unwrap().hash()
        );
        assert_ne!(
            key.hash(),
            LegacyKey::parse("ABCD-1234-EFGH").unwrap().hash()
        );
        assert_eq!(LegacyKey::parse("abc"), Err(LegacyKeyError::WrongLength(3)));
        assert_eq!(
            LegacyKey::parse("abc def"),
            Err(LegacyKeyError::InvalidCharacter(4))
        );
        // The same text as one of our keys hashes differently as a legacy key.
        let ours = LicenseKey::generate();
        assert_ne!(
            LegacyKey::parse(&ours.to_string()).unwrap().hash(),
            ours.hash()
        );
    }

    #[test]
    fn display_is_five_groups_of_five() {
        let key = LicenseKey::from_entropy([0xA5; ENTROPY_BYTES]);
        let text = key.to_string();
        assert_eq!(text.len(), 29);
        assert!(text.split('-').all(|g| g.len() == 5));
        assert_eq!(text.parse::<LicenseKey>(), Ok(key));
    }

    #[test]
    fn look_alikes_read_as_digits() {
        let key = LicenseKey::from_entropy([0; ENTROPY_BYTES]);
        let text = key.to_string().replace('0', "o").replace('1', "l");
        assert_eq!(text.parse::<LicenseKey>(), Ok(key));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            "ABC".parse::<LicenseKey>(),
            Err(KeyParseError::WrongLength(3))
        );
        assert_eq!(
            "AAAAA-AAAAU".parse::<LicenseKey>(),
            Err(KeyParseError::InvalidCharacter {
                character: 'U',
                position: 10
            })
        );
    }

    #[test]
    fn hash_does_not_depend_on_formatting() {
        let key = LicenseKey::generate();
        let loose: LicenseKey = key
            .to_string()
            .to_lowercase()
            .replace('-', " ")
            .parse()
            .unwrap();
        assert_eq!(loose.hash(), key.hash());
        assert_eq!(KeyHash::from_hex(&key.hash().to_hex()), Some(key.hash()));
    }
}
