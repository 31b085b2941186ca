//! Byte sizes as people write them in the config file: `"20 GiB"`, `"500 MiB"`, `"1.5G"`, or a
//! plain integer of bytes. Binary units (`KiB`, `MiB`, `GiB`, `TiB`, and the short `K`, `M`, `G`,
//! `T`) count in 1024s; decimal ones (`KB`, `MB`, `GB`, `TB`) in 1000s. Case does not matter.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes; reads from a human string or an integer, writes as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const KIB: u64 = 1 << 10;
    pub const MIB: u64 = 1 << 20;
    pub const GIB: u64 = 1 << 30;

    pub fn bytes(self) -> u64 {
        self.0
    }
}

/// Parses `"20 GiB"`, `"500MiB"`, `"1.5 G"`, `"4096"`, `"10 kb"`. Fractions are allowed with a
/// unit and rounded down to whole bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad =
        |why: &str| format!("{text:?} is not a size ({why}); write e.g. \"20 GiB\" or \"500 MiB\"");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() {
        return Err(bad("no number"));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad("unknown unit")),
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole
            .checked_mul(multiplier)
            .ok_or_else(|| bad("too large"));
    }
    let value: f64 = number.parse().map_err(|_| bad("bad number"))?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad("too large"));
    }
    Ok(bytes as u64)
}

/// `1536` → `"1.5 KiB"`; whole bytes below 1 KiB (`"512 B"`).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&human(self.0))
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_size(s).map(ByteSize)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size such as \"20 GiB\" or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("size {v} is negative")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_parse_in_binary_and_decimal_units() {
        let cases = [
            ("20 GiB", 20 << 30),
            ("500 MiB", 500 << 20),
            ("500MiB", 500 << 20),
            ("1.5 GiB", 3 << 29),
            ("10G", 10 << 30),
            ("64k", 64 << 10),
            ("2 tib", 2 << 40),
            ("10 KB", 10_000),
            ("3 GB", 3_000_000_000),
            ("4096", 4096),
            (" 7 B ", 7),
            ("0", 0),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn nonsense_sizes_are_refused_with_the_reason() {
        for (text, why) in [
            ("", "no number"),
            ("GiB", "no number"),
            ("12 XB", "unknown unit"),
            ("-1 GiB", "no number"),
            ("1.2.3 MiB", "bad number"),
            ("99999999999 TiB", "too large"),
        ] {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn sizes_deserialize_from_strings_and_integers_and_print_for_people() {
        #[derive(Deserialize)]
        struct T {
            a: ByteSize,
            b: ByteSize,
        }
        let t: T = toml::from_str("a = \"1 MiB\"\nb = 4096\n").unwrap();
        assert_eq!((t.a, t.b), (ByteSize(1 << 20), ByteSize(4096)));
        assert!(toml::from_str::<T>("a = -1\nb = 1\n").is_err());
        assert_eq!(human(512), "512 B");
        assert_eq!(ByteSize(3 << 30).to_string(), "3.0 GiB");
    }
}
