//! Secrets at rest: the deployment's key and the AEAD that seals a value with it
//! (XChaCha20-Poly1305). Knows nothing of tables: `store/secrets.rs` decides what is sealed and
//! what each sealed value is bound to.
//!
//! A sealed value is text, `enc:v1:` followed by the base64 of a random 24-byte nonce and the
//! ciphertext with its tag. The prefix tells sealed values from plain text written before
//! secrets were sealed, and leaves room for another scheme (`v2`) beside this one. A nonce of
//! 24 random bytes never needs a counter kept anywhere, which suits many nodes sealing with
//! one key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// What every sealed value starts with.
pub const SEALED_PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
/// The key file a SQLite deployment keeps beside its database when no key is given.
pub const KEY_FILE: &str = "hookrpc.key";

/// The deployment's key: 32 bytes, wiped from memory when dropped.
pub struct SecretKey(Zeroizing<[u8; KEY_LEN]>);

impl SecretKey {
    /// A key as given to `--encryption-key`: 32 bytes in base64. The error never repeats the
    /// text, which may be a real key with a typo.
    pub fn from_base64(text: &str) -> Result<SecretKey, String> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| "the encryption key is not valid base64".to_owned())?,
        );
        let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "the encryption key must be {KEY_LEN} bytes in base64 (it is {} bytes); make \
                 one with `head -c 32 /dev/urandom | base64`",
                bytes.len()
            )
        })?;
        Ok(SecretKey(Zeroizing::new(key)))
    }

    fn generate() -> SecretKey {
        SecretKey(Zeroizing::new(
            XChaCha20Poly1305::generate_key(&mut OsRng).into(),
        ))
    }

    fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(*self.0))
    }
}

/// Where a SQLite database at `db` keeps its key file: beside it.
pub fn key_file_beside(db: &Path) -> PathBuf {
    match db.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(KEY_FILE),
        _ => PathBuf::from(KEY_FILE),
    }
}

/// Reads the key file at `path`, if there is one.
pub fn read_key_file(path: &Path) -> Result<Option<SecretKey>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => Zeroizing::new(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("key file {}: {e}", path.display())),
    };
    warn_if_others_may_read(path);
    SecretKey::from_base64(&text)
        .map(Some)
        .map_err(|e| format!("key file {}: {e}", path.display()))
}

/// Creates a new key file at `path`, readable and writable by its owner only (0600 from the
/// start: the key is never in a file anyone else could open, not even for a moment), and
/// returns its key. Refuses to replace a file that exists.
pub fn create_key_file(path: &Path) -> Result<SecretKey, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let key = SecretKey::generate();
    let failed = |e: std::io::Error| format!("cannot create key file {}: {e}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    let text = key.to_base64();
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.write_all(b"\n").map_err(failed)?;
    // On disk before anything is sealed with it: a crash must not leave sealed secrets and
    // no key.
    file.sync_all().map_err(failed)?;
    Ok(key)
}

fn warn_if_others_may_read(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                "the key file can be read by other users: chmod 600 it"
            );
        }
    }
}

/// A value that does not open: sealed with another key, bound to another context, or damaged.
#[derive(Debug, thiserror::Error)]
#[error("a sealed value does not open with this key")]
pub struct OpenError;

/// Seals and opens values with the deployment's key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    pub fn new(key: &SecretKey) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new((&*key.0).into()),
        }
    }

    /// `plain`, sealed and bound to `context` (the associated data: the value opens only with
    /// the same context).
    pub fn seal(&self, plain: &str, context: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plain.as_bytes(),
            aad: context.as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(&nonce, payload)
            .expect("XChaCha20-Poly1305 seals any message shorter than 256 GiB");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(bytes))
    }

    /// The plain text of a value [`Sealer::seal`] made with this key and `context`.
    pub fn open(&self, stored: &str, context: &str) -> Result<String, OpenError> {
        let encoded = stored.strip_prefix(SEALED_PREFIX).ok_or(OpenError)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| OpenError)?;
        if bytes.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let payload = Payload {
            msg: sealed,
            aad: context.as_bytes(),
        };
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| OpenError)?;
        String::from_utf8(plain).map_err(|_| OpenError)
    }
}

/// Whether a stored value is sealed (rather than plain text from before sealing).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(&SecretKey::generate())
    }

    #[test]
    fn a_sealed_value_opens_with_its_key_and_context_only() {
        let (mine, other) = (sealer(), sealer());
        let sealed = mine.seal("whsec_abc", "ctx 1");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(mine.open(&sealed, "ctx 1").unwrap(), "whsec_abc");
        assert!(mine.open(&sealed, "ctx 2").is_err(), "bound to its context");
        assert!(
            other.open(&sealed, "ctx 1").is_err(),
            "opens with its key only"
        );
        assert!(
            mine.open("whsec_abc", "ctx 1").is_err(),
            "plain text is not sealed"
        );
        let mut tampered = sealed.clone();
        tampered.replace_range(sealed.len() - 3.., "AAA");
        assert!(mine.open(&tampered, "ctx 1").is_err());
    }

    #[test]
    fn the_same_value_seals_differently_each_time() {
        let s = sealer();
        assert_ne!(s.seal("p", "c"), s.seal("p", "c"));
    }

    #[test]
    fn keys_are_32_bytes_of_base64_and_errors_never_repeat_the_text() {
        let key = SecretKey::generate();
        assert!(SecretKey::from_base64(&key.to_base64()).is_ok());
        let short = STANDARD.encode([7u8; 16]);
        let e = SecretKey::from_base64(&short).err().unwrap();
        assert!(e.contains("32 bytes") && !e.contains(&short), "{e}");
        let e = SecretKey::from_base64("not base64 at all!").err().unwrap();
        assert!(!e.contains("at all"), "{e}");
    }

    #[test]
    fn a_key_file_is_created_0600_once_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = key_file_beside(&dir.path().join("hookrpc.db"));
        assert!(read_key_file(&path).unwrap().is_none());
        let created = create_key_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let read = read_key_file(&path).unwrap().unwrap();
        let sealed = Sealer::new(&created).seal("x", "c");
        assert_eq!(Sealer::new(&read).open(&sealed, "c").unwrap(), "x");
        assert!(create_key_file(&path).is_err(), "never replaced");
        assert_eq!(
            key_file_beside(Path::new("hookrpc.db")),
            PathBuf::from(KEY_FILE)
        );
    }
}
