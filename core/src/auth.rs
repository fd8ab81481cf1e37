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
//!
//! Listener authentication adds two tags over one [`Transcript`] (the first
//! frame's bytes and both nonces) with a context string per direction, and
//! the [`NonceSource`] that makes nonces without a random number generator:
//! a per-run secret and a counter, through the key.

use core::fmt;

use hmac::{KeyInit, Mac};

use crate::notifier::Signer;
use crate::wire::{Nonce, Tag, NONCE_LEN, TAG_LEN};

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

#[cfg(feature = "defmt")]
impl defmt::Format for Key {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Key(..)")
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
        // One MAC path (`tag`) for signing and checking, compared without
        // an early exit: smaller on a board than a second finalize path.
        let expected = self.tag(parts);
        tag.len() == TAG_LEN
            && expected
                .iter()
                .zip(tag)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
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

/// The context of the listener's proof tag `T_L` (`PROTOCOL.md`).
pub const PROOF_CONTEXT: &[u8] = b"flagpost listener proof";
/// The context of the broker's accept tag `T_B`.
pub const ACCEPT_CONTEXT: &[u8] = b"flagpost broker accept";
/// The context of the broker's nonces.
pub const BROKER_NONCE_CONTEXT: &[u8] = b"flagpost broker nonce";
/// The context of the listener's nonces.
pub const LISTENER_NONCE_CONTEXT: &[u8] = b"flagpost listener nonce";

/// What both tags of a handshake cover: the first frame's bytes as sent
/// (the version-2 hello or stats request) and the two nonces.
#[derive(Clone, Copy, Debug)]
pub struct Transcript<'a> {
    /// The hello's or stats request's bytes, header included.
    pub first: &'a [u8],
    /// The broker's nonce `Nb`, from the challenge.
    pub broker_nonce: &'a Nonce,
    /// The listener's nonce `Nl`, from the proof.
    pub listener_nonce: &'a Nonce,
}

impl Transcript<'_> {
    fn parts(&self, context: &'static [u8]) -> [&[u8]; 4] {
        [context, self.first, self.broker_nonce, self.listener_nonce]
    }

    /// The listener's proof tag `T_L`.
    pub fn proof(&self, key: &Key) -> Tag {
        key.tag(&self.parts(PROOF_CONTEXT))
    }

    /// The broker's accept tag `T_B`.
    pub fn accept(&self, key: &Key) -> Tag {
        key.tag(&self.parts(ACCEPT_CONTEXT))
    }

    /// Which key of `keys`, if any, made the proof tag `tag` (in constant
    /// time per key).
    pub fn verify_proof(&self, keys: &Keyring, tag: &Tag) -> Option<KeyUsed> {
        keys.verify(&self.parts(PROOF_CONTEXT), tag)
    }

    /// Whether `tag` is the accept tag `key` makes (in constant time).
    pub fn verify_accept(&self, key: &Key, tag: &Tag) -> bool {
        key.verify(&self.parts(ACCEPT_CONTEXT), tag)
    }
}

/// Handshake nonces without a random number generator: the *n*-th is the
/// first 16 bytes of HMAC-SHA-256(key, context ‖ seed ‖ *n*), *n* as 8
/// big-endian bytes. They never repeat for a seed (the counter only grows),
/// and nobody without the key can predict them; a seed must be fresh for
/// every run (random, or secret and never reused), or the sequence repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NonceSource {
    context: &'static [u8],
    seed: [u8; 16],
    counter: u64,
}

impl NonceSource {
    /// A broker's nonces: seeded with its per-run broker id and secret
    /// routing hash key (`broker::Config::broker_id`, `hash_key`).
    pub const fn broker(broker_id: u64, hash_key: u64) -> Self {
        let seed = ((broker_id as u128) << 64 | hash_key as u128).to_be_bytes();
        NonceSource {
            context: BROKER_NONCE_CONTEXT,
            seed,
            counter: 0,
        }
    }

    /// A listener's nonces: `seed` is 16 random bytes its transport draws
    /// once per run (`getrandom`, a board's RNG at boot).
    pub const fn listener(seed: [u8; 16]) -> Self {
        NonceSource {
            context: LISTENER_NONCE_CONTEXT,
            seed,
            counter: 0,
        }
    }

    /// How many nonces were handed out.
    pub const fn count(&self) -> u64 {
        self.counter
    }

    /// The next nonce, made with `key`.
    pub fn next(&mut self, key: &Key) -> Nonce {
        let n = self.counter.to_be_bytes();
        self.counter = self.counter.wrapping_add(1);
        let tag = key.tag(&[self.context, &self.seed, &n]);
        let mut nonce = [0u8; NONCE_LEN];
        for (o, t) in nonce.iter_mut().zip(tag.iter()) {
            *o = *t;
        }
        nonce
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
    fn nonces_never_repeat_and_depend_on_key_seed_and_role() {
        let key = Key::new(&[7; 32]).unwrap();
        let mut a = NonceSource::listener([1; 16]);
        let first = a.next(&key);
        assert_ne!(first, a.next(&key));
        assert_eq!(a.count(), 2);
        assert_eq!(NonceSource::listener([1; 16]).next(&key), first);
        assert_ne!(NonceSource::listener([2; 16]).next(&key), first);
        assert_ne!(
            NonceSource::listener([1; 16]).next(&Key::new(&[8; 32]).unwrap()),
            first
        );
        let mut seed = [0u8; 16];
        seed[..8].copy_from_slice(&1u64.to_be_bytes());
        seed[8..].copy_from_slice(&2u64.to_be_bytes());
        assert_eq!(NonceSource::broker(1, 2).seed, seed);
        assert_ne!(
            NonceSource::broker(1, 2).next(&key),
            NonceSource::listener(seed).next(&key),
            "the role's context separates them"
        );
    }

    #[test]
    fn the_two_tags_of_a_transcript_differ_and_verify() {
        let key = Key::new(&[7; 32]).unwrap();
        let other = Key::new(&[8; 32]).unwrap();
        let t = Transcript {
            first: b"FP\x02\x16\x00\x00",
            broker_nonce: &[1; 16],
            listener_nonce: &[2; 16],
        };
        let (proof, accept) = (t.proof(&key), t.accept(&key));
        assert_ne!(proof, accept);
        let ring = Keyring::new(other.clone()).with_previous(key.clone());
        assert_eq!(t.verify_proof(&ring, &proof), Some(KeyUsed::Previous));
        assert_eq!(t.verify_proof(&ring, &accept), None);
        assert!(t.verify_accept(&key, &accept));
        assert!(!t.verify_accept(&key, &proof));
        assert!(!t.verify_accept(&other, &accept));
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
