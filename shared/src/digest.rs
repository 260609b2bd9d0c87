//! 32-byte digests that travel as 64 lower-case hex digits.

/// Gives a `pub struct Name(pub [u8; 32])` hex text form (`to_hex`,
/// `from_hex`, serde as a hex string) and a short Debug.
macro_rules! hex_digest {
    ($name:ident) => {
        impl $name {
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            pub fn from_hex(text: &str) -> Option<Self> {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(text, &mut bytes).ok()?;
                Some(Self(bytes))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({}…)"), &self.to_hex()[..12])
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::from_hex(&text)
                    .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
            }
        }
    };
}

pub(crate) use hex_digest;
