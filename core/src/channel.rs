//! Channel identifiers: the short, bounded UTF-8 names that target a
//! notification at one channel (one gateway, one modem, one SMPP link).
//!
//! A [`ChannelId`] is 1 to [`ChannelId::MAX_LEN`] (32) bytes of UTF-8 with no
//! control characters, stored inline so it is `Copy` and needs no allocation.
//! Comparison is byte-exact: `GSM1` and `gsm1` are different channels.

use core::fmt;

/// A validated channel name: 1..=32 bytes of UTF-8 without control characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelId {
    len: u8,
    bytes: [u8; ChannelId::MAX_LEN],
}

/// Why a byte string is not a [`ChannelId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ChannelIdError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`ChannelId::MAX_LEN`] bytes.
    TooLong,
    /// The name is not valid UTF-8.
    NotUtf8,
    /// The name contains a control character (U+0000..U+001F, U+007F..U+009F).
    ControlCharacter,
}

impl ChannelId {
    /// The longest channel name, in bytes.
    pub const MAX_LEN: usize = 32;

    /// Validates `name` as a channel id.
    pub fn new(name: &str) -> Result<Self, ChannelIdError> {
        Self::from_bytes(name.as_bytes())
    }

    /// Validates raw bytes (from the wire) as a channel id.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ChannelIdError> {
        if bytes.is_empty() {
            return Err(ChannelIdError::Empty);
        }
        let len = u8::try_from(bytes.len())
            .ok()
            .filter(|n| usize::from(*n) <= Self::MAX_LEN)
            .ok_or(ChannelIdError::TooLong)?;
        let text = core::str::from_utf8(bytes).map_err(|_| ChannelIdError::NotUtf8)?;
        if text.chars().any(char::is_control) {
            return Err(ChannelIdError::ControlCharacter);
        }
        let mut id = ChannelId {
            len: 0,
            bytes: [0; Self::MAX_LEN],
        };
        for (dst, src) in id.bytes.iter_mut().zip(bytes) {
            *dst = *src;
        }
        id.len = len;
        Ok(id)
    }

    /// The name as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        // `len <= MAX_LEN` is an invariant of every constructor.
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Validated as UTF-8 on construction; the fallback is unreachable.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// Length in bytes (1..=32).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId({:?})", self.as_str())
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for ChannelId {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.as_str())
    }
}

impl core::str::FromStr for ChannelId {
    type Err = ChannelIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChannelId::new(s)
    }
}

impl fmt::Display for ChannelIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChannelIdError::Empty => "channel id is empty",
            ChannelIdError::TooLong => "channel id is longer than 32 bytes",
            ChannelIdError::NotUtf8 => "channel id is not valid UTF-8",
            ChannelIdError::ControlCharacter => "channel id contains a control character",
        })
    }
}

impl core::error::Error for ChannelIdError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_bounded_utf8() {
        let id = ChannelId::new("GSM-modem 1").unwrap();
        assert_eq!(id.as_str(), "GSM-modem 1");
        assert_eq!(id.len(), 11);
        let max = "é".repeat(16);
        assert_eq!(ChannelId::new(&max).unwrap().len(), 32);
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(ChannelId::new(""), Err(ChannelIdError::Empty));
        assert_eq!(
            ChannelId::new(&"x".repeat(33)),
            Err(ChannelIdError::TooLong)
        );
        assert_eq!(
            ChannelId::from_bytes(&[0xff, 0xfe]),
            Err(ChannelIdError::NotUtf8)
        );
        assert_eq!(
            ChannelId::new("a\nb"),
            Err(ChannelIdError::ControlCharacter)
        );
        assert_eq!(
            ChannelId::new("a\u{85}b"),
            Err(ChannelIdError::ControlCharacter)
        );
    }

    #[test]
    fn equality_is_byte_exact() {
        assert_ne!(ChannelId::new("a").unwrap(), ChannelId::new("A").unwrap());
        assert_eq!(ChannelId::new("a").unwrap(), "a".parse().unwrap());
    }
}
