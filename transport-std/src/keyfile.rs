//! Key files: where the broker, the notifier and the command line read the
//! shared secret from (never from a command line or the environment, which
//! `ps` and `/proc` show), and how `flagpost keygen` writes a new one.
//!
//! A key file holds the key as hexadecimal text, 32 to 128 digits (16 to 64
//! bytes); whitespace and lines starting with `#` are ignored. On Unix a
//! file that its group or others may read is refused, as `ssh` refuses a
//! private key: the key is the broker's whole defence.

use std::io::Write;
use std::path::{Path, PathBuf};

use flagpost_core::auth::{Key, KeyError, Keyring};

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not hexadecimal text.
    #[error("key file {path}: not a key (expected 32–128 hexadecimal digits): {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key has a bad length.
    #[error("key file {path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Too short or too long.
        source: KeyError,
    },
    /// Its group or others may read it.
    #[error("key file {path} is readable by others (mode {mode:o}); run: chmod 600 {path}")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// The secret bytes of a key file's text.
fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.bytes())
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("an odd number of digits ({})", digits.len()));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).map_err(|_| "a non-ASCII byte".to_owned())?;
            u8::from_str_radix(s, 16).map_err(|_| format!("{s:?} is not hexadecimal"))
        })
        .collect()
}

/// Reads the key in `path`.
pub fn read_key_file(path: &Path) -> Result<Key, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Exposed {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let secret = parse_hex(&text).map_err(|reason| KeyFileError::Format {
        path: path.to_owned(),
        reason,
    })?;
    Key::new(&secret).map_err(|source| KeyFileError::Key {
        path: path.to_owned(),
        source,
    })
}

/// The keyring of a current key file and, during a rotation, the previous
/// one.
pub fn read_keyring(current: &Path, previous: Option<&Path>) -> Result<Keyring, KeyFileError> {
    let ring = Keyring::new(read_key_file(current)?);
    Ok(match previous {
        Some(p) => ring.with_previous(read_key_file(p)?),
        None => ring,
    })
}

/// Writes a new random 32-byte key to `path`, which must not exist, readable
/// by its owner only.
pub fn generate_key_file(path: &Path) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    writeln!(file, "# Flagpost key: keep it secret (chmod 600)\n{hex}").map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh path in the temp directory, removed when dropped.
    fn temp(_name: &str) -> tempfile::TempPath {
        let path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        std::fs::remove_file(&path).unwrap();
        path
    }

    #[test]
    fn a_generated_key_reads_back_and_is_private() {
        let path = temp("gen");
        generate_key_file(&path).unwrap();
        let key = read_key_file(&path).unwrap();
        assert_eq!(key.tag(&[b"x"]), read_key_file(&path).unwrap().tag(&[b"x"]));
        assert!(matches!(
            generate_key_file(&path),
            Err(KeyFileError::Io { .. })
        ));
    }

    #[test]
    fn bad_files_get_typed_errors() {
        use std::os::unix::fs::PermissionsExt;
        let write = |name: &str, text: &str, mode: u32| {
            let p = temp(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        let ok = "# comment\n0011223344556677 8899aabbccddeeff\n";
        assert!(read_key_file(&write("ok", ok, 0o600)).is_ok());
        let e = read_key_file(&write("open", ok, 0o644)).unwrap_err();
        assert!(matches!(e, KeyFileError::Exposed { mode: 0o644, .. }));
        assert!(e.to_string().contains("chmod 600"), "{e}");
        let e = read_key_file(&write("odd", "abc", 0o600)).unwrap_err();
        assert!(matches!(e, KeyFileError::Format { .. }), "{e}");
        let e = read_key_file(&write("nothex", "zz", 0o600)).unwrap_err();
        assert!(matches!(e, KeyFileError::Format { .. }), "{e}");
        let e = read_key_file(&write("short", "00112233", 0o600)).unwrap_err();
        assert!(matches!(
            e,
            KeyFileError::Key {
                source: KeyError::TooShort,
                ..
            }
        ));
        let e = read_key_file(&temp("missing")).unwrap_err();
        assert!(matches!(e, KeyFileError::Io { .. }));
    }
}
