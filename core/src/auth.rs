//! Authentication: the 16-byte tags of PROTOCOL.md (*The authentication
//! tag*, *Listener authentication*), HMAC-SHA-256 truncated to 16 bytes, and
//! the keys that make them — one [`Key`], or a [`Keyring`] of the current
//! key and, while a rotation is under way, the previous one.
//!
//! A [`Key`] holds the HMAC state already keyed (the inner and outer pads
//! hashed once), so a tag costs the hash of the message alone: two or three
//! SHA-256 blocks for a datagram. Tags are compared in constant time. Where
//! the bytes of a key come from (a key file, a board's configuration block)
//! is the transport's business; this module never sees a path or prints a
//! key.

use core::fmt;

use hmac::{KeyInit, Mac};

use crate::notifier::Signer;
use crate::wire::{Tag, TAG_LEN};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The shortest secret a [`Key`] accepts, in bytes (128 bits).
pub const KEY_MIN_LEN: usize = 16;
/// The longest secret a [`Key`] accepts, in bytes (one SHA-256 block).
pub const KEY_MAX_LEN: usize = 64;

/// Why bytes are not a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KeyError {
    /// Fewer than [`KEY_MIN_LEN`] bytes.
    TooShort,
    /// More than [`KEY_MAX_LEN`] bytes.
    TooLong,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::TooShort => write!(f, "a key is at least {KEY_MIN_LEN} bytes"),
            KeyError::TooLong => write!(f, "a key is at most {KEY_MAX_LEN} bytes"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KeyError {}

/// A shared secret, ready to tag and verify.
#[derive(Clone)]
pub struct Key {
    mac: HmacSha256,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key from its secret bytes ([`KEY_MIN_LEN`]–[`KEY_MAX_LEN`]).
    pub fn new(secret: &[u8]) -> Result<Key, KeyError> {
        if secret.len() < KEY_MIN_LEN {
            return Err(KeyError::TooShort);
        }
        if secret.len() > KEY_MAX_LEN {
            return Err(KeyError::TooLong);
        }
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| KeyError::TooLong)?;
        Ok(Key { mac })
    }

    /// The tag of the concatenation of `parts`.
    pub fn tag(&self, parts: &[&[u8]]) -> Tag {
        let mut mac = self.mac.clone();
        for p in parts {
            mac.update(p);
        }
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        for (t, f) in tag.iter_mut().zip(full.iter()) {
            *t = *f;
        }
        tag
    }

    /// Whether `tag` is the tag of the concatenation of `parts` (in
    /// constant time).
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        if tag.len() != TAG_LEN {
            return false;
        }
        let mut mac = self.mac.clone();
        for p in parts {
            mac.update(p);
        }
        mac.verify_truncated_left(tag).is_ok()
    }
}

impl Signer for Key {
    fn sign(&self, signed: &[u8]) -> Tag {
        self.tag(&[signed])
    }
}

/// Which key of a [`Keyring`] verified a tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KeyUsed {
    /// The current key.
    Current,
    /// The previous key (a peer not yet moved to the current one).
    Previous,
}

/// The keys a broker accepts: the current one, which it signs with, and
/// during a rotation the previous one, which it still accepts (and answers
/// with, so that a peer on the old key can verify its acks).
#[derive(Clone, Debug)]
pub struct Keyring {
    current: Key,
    previous: Option<Key>,
}

impl Keyring {
    /// A ring of one key.
    pub fn new(current: Key) -> Keyring {
        Keyring {
            current,
            previous: None,
        }
    }

    /// The same ring, also accepting `previous`.
    pub fn with_previous(mut self, previous: Key) -> Keyring {
        self.previous = Some(previous);
        self
    }

    /// The key a peer's tag was made with.
    pub fn key(&self, used: KeyUsed) -> &Key {
        match (used, &self.previous) {
            (KeyUsed::Previous, Some(p)) => p,
            _ => &self.current,
        }
    }

    /// Whether a previous key is accepted.
    pub fn has_previous(&self) -> bool {
        self.previous.is_some()
    }

    /// Which key, if any, made `tag` over the concatenation of `parts`: the
    /// current one is tried first.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> Option<KeyUsed> {
        if self.current.verify(parts, tag) {
            return Some(KeyUsed::Current);
        }
        match &self.previous {
            Some(p) if p.verify(parts, tag) => Some(KeyUsed::Previous),
            _ => None,
        }
    }
}

impl Signer for Keyring {
    fn sign(&self, signed: &[u8]) -> Tag {
        self.current.sign(signed)
    }
}

/// Checks the tag that ends a tagged datagram (`bytes`, already parsed as
/// tagged, so at least [`TAG_LEN`] long): which key made it, if any.
pub fn verify_datagram(keys: &Keyring, bytes: &[u8]) -> Option<KeyUsed> {
    let split = bytes.len().checked_sub(TAG_LEN)?;
    let (signed, tag) = bytes.split_at(split);
    keys.verify(&[signed], tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn rfc4231_case_2_truncated() {
        // RFC 4231 test case 2 needs a 4-byte key, shorter than ours; case 4
        // (25-byte key 0x01..0x19, data 50 × 0xcd) fits.
        let secret: [u8; 25] = core::array::from_fn(|i| (i + 1) as u8);
        let key = Key::new(&secret).unwrap();
        let tag = key.tag(&[&[0xcd; 50]]);
        assert_eq!(tag, hex("82558a389a443c0ea4cc819899f2083a"));
        assert!(key.verify(&[&[0xcd; 20], &[0xcd; 30]], &tag));
    }

    #[test]
    fn key_lengths_are_bounded() {
        assert_eq!(Key::new(&[1; 15]).unwrap_err(), KeyError::TooShort);
        assert_eq!(Key::new(&[1; 65]).unwrap_err(), KeyError::TooLong);
        assert!(Key::new(&[1; 16]).is_ok() && Key::new(&[1; 64]).is_ok());
    }

    #[test]
    fn a_ring_accepts_its_previous_key_and_signs_with_the_current() {
        let (old, new) = (Key::new(&[1; 32]).unwrap(), Key::new(&[2; 32]).unwrap());
        let ring = Keyring::new(new.clone()).with_previous(old.clone());
        let msg: &[&[u8]] = &[b"FP"];
        assert_eq!(ring.verify(msg, &new.tag(msg)), Some(KeyUsed::Current));
        assert_eq!(ring.verify(msg, &old.tag(msg)), Some(KeyUsed::Previous));
        assert_eq!(Keyring::new(new.clone()).verify(msg, &old.tag(msg)), None);
        assert_eq!(ring.sign(b"FP"), new.tag(msg));
        let mut bad = new.tag(msg);
        bad[15] ^= 1;
        assert_eq!(ring.verify(msg, &bad), None);
        assert_eq!(ring.verify(msg, &bad[..15]), None);
        assert_eq!(format!("{:?}", ring.key(KeyUsed::Previous)), "Key(..)");
    }
}
