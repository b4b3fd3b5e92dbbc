//! Session and socket ids: 20 base64url characters, like Node's base64id, carrying the shard
//! that owns the session so any shard can route a request to its owner.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::{Rng, SeedableRng};
use std::fmt;

/// A 20-character id. Layout of the 15 encoded bytes: the owning shard, 10 random bytes, then a
/// big-endian sequence number (as base64id ends with a counter).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sid([u8; 20]);

impl std::hash::Hash for Sid {
    /// Characters 8..16 encode random bytes only, so they spread well on their own and one
    /// word is all a hasher needs to mix (maps of sids are on the delivery hot path).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[8..16]);
        state.write_u64(u64::from_le_bytes(word));
    }
}

impl Sid {
    /// The shard that owns this session.
    pub fn shard(&self) -> usize {
        let mut raw = [0u8; 15];
        // Always valid: a Sid holds only what `new` or `parse` accepted.
        let _ = URL_SAFE_NO_PAD.decode_slice(self.0, &mut raw);
        raw[0] as usize
    }

    /// Parses a 20-character base64url id; `None` for anything else.
    pub fn parse(s: &str) -> Option<Sid> {
        let bytes: [u8; 20] = s.as_bytes().try_into().ok()?;
        let mut raw = [0u8; 15];
        URL_SAFE_NO_PAD.decode_slice(bytes, &mut raw).ok()?;
        Some(Sid(bytes))
    }

    /// The 20 characters.
    pub fn as_str(&self) -> &str {
        // Always valid: base64url output is ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

/// Makes ids for one shard. Not shared across threads: each shard owns one.
#[derive(Debug)]
pub struct SidGenerator {
    shard: u8,
    rng: rand::rngs::SmallRng,
    seq: u32,
}

impl SidGenerator {
    /// A generator of ids owned by `shard`.
    pub fn new(shard: usize) -> Self {
        SidGenerator {
            shard: u8::try_from(shard).unwrap_or(u8::MAX),
            rng: rand::rngs::SmallRng::from_os_rng(),
            seq: 0,
        }
    }

    /// A fresh id: unique on this shard, unpredictable, carrying the shard.
    pub fn next_sid(&mut self) -> Sid {
        let mut raw = [0u8; 15];
        raw[0] = self.shard;
        self.rng.fill(&mut raw[1..11]);
        self.seq = self.seq.wrapping_add(1);
        raw[11..].copy_from_slice(&self.seq.to_be_bytes());
        let mut out = [0u8; 20];
        // 15 bytes always encode to exactly 20 characters.
        let _ = URL_SAFE_NO_PAD.encode_slice(raw, &mut out);
        Sid(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_20_base64url_chars_and_carry_the_shard() {
        for shard in [0usize, 1, 3, 200] {
            let mut g = SidGenerator::new(shard);
            let a = g.next_sid();
            let b = g.next_sid();
            assert_ne!(a, b);
            assert_eq!(a.as_str().len(), 20);
            assert!(a
                .as_str()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
            assert_eq!(a.shard(), shard);
            assert_eq!(Sid::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn parse_refuses_malformed_ids() {
        assert_eq!(Sid::parse("short"), None);
        assert_eq!(Sid::parse("lv_VI97HAXpY6yYWAAAC!"), None);
        assert_eq!(Sid::parse("lv_VI97HAXpY6yYWAA+C"), None);
        assert!(
            Sid::parse("lv_VI97HAXpY6yYWAAAC").is_some(),
            "Node's example id parses"
        );
    }
}
