//! One-time codes: made from the OS CSPRNG, never stored in clear, checked in constant time.
//!
//! Each verification stores a random 32-byte nonce. The code is HMAC-SHA256(secret, nonce)
//! reduced to the requested number of digits, so the dispatcher can rebuild it to send (and
//! resend the same code) while the database alone reveals nothing: it holds the nonce and
//! HMAC-SHA256(secret, nonce || code), which `check` compares in constant time.

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use rand::TryRngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use verify_carrier::OneTimeCode;

use crate::domain::{CodeMatcher, StoredCode};

type HmacSha256 = Hmac<Sha256>;

/// Smallest accepted secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Makes and checks codes under the server secret.
#[derive(Clone)]
pub struct CodeBook {
    secret: Vec<u8>,
}

impl std::fmt::Debug for CodeBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeBook(<secret redacted>)")
    }
}

impl CodeBook {
    /// A code book under `secret` (at least [`MIN_SECRET_BYTES`]).
    pub fn new(secret: Vec<u8>) -> Self {
        assert!(secret.len() >= MIN_SECRET_BYTES, "code secret too short");
        Self { secret }
    }

    /// Draws a new code of `length` digits from the OS CSPRNG.
    pub fn issue(&self, length: u32) -> Result<StoredCode, String> {
        let mut nonce = vec![0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|e| format!("OS random generator failed: {e}"))?;
        let code = self.code_for(&nonce, length);
        let check = self.check_value(&nonce, code.expose());
        Ok(StoredCode { nonce, check })
    }

    /// The code a stored nonce stands for.
    pub fn code_for(&self, nonce: &[u8], length: u32) -> OneTimeCode {
        let mut mac = self.mac(b"verifyd/code/v1");
        mac.update(nonce);
        let digest = mac.finalize().into_bytes();
        // 128 bits reduced modulo 10^length: the bias is below 10^10 / 2^128, i.e. none.
        let mut wide = [0u8; 16];
        wide.copy_from_slice(&digest[..16]);
        let value = u128::from_be_bytes(wide) % 10u128.pow(length);
        OneTimeCode::new(format!("{value:0width$}", width = length as usize))
    }

    /// The code a stored code stands for, to send it.
    pub fn code_of(&self, stored: &StoredCode, length: u32) -> OneTimeCode {
        self.code_for(&stored.nonce, length)
    }

    /// A public fingerprint of the secret (it reveals nothing of it), to tell whether two
    /// servers use the same one.
    pub fn fingerprint(&self) -> String {
        let digest = self
            .mac(b"verifyd/secret-fingerprint/v1")
            .finalize()
            .into_bytes();
        hex::encode(&digest[..16])
    }

    fn check_value(&self, nonce: &[u8], code: &str) -> Vec<u8> {
        let mut mac = self.mac(b"verifyd/check/v1");
        mac.update(nonce);
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    fn mac(&self, purpose: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .expect("HMAC takes any key length");
        mac.update(purpose);
        mac
    }
}

impl CodeMatcher for CodeBook {
    fn matches(&self, stored: &StoredCode, candidate: &str) -> bool {
        let value = self.check_value(&stored.nonce, candidate);
        value.ct_eq(&stored.check).into()
    }
}

/// Parses a configured secret: hex, at least 32 bytes.
pub fn parse_secret(text: &str) -> Result<Vec<u8>, String> {
    let bytes = hex::decode(text.trim()).map_err(|_| "must be hex digits".to_string())?;
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "must be at least {MIN_SECRET_BYTES} bytes ({} hex digits), got {}",
            MIN_SECRET_BYTES * 2,
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// The configured secret, or the one in `data_dir`, created there (mode 0600) on first start.
pub fn load_or_create_secret(configured: Option<&str>, data_dir: &Path) -> Result<Vec<u8>, String> {
    if let Some(text) = configured {
        return parse_secret(text).map_err(|e| format!("secret: {e}"));
    }
    let path = data_dir.join(crate::config::SECRET_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_secret(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .map_err(|e| format!("cannot create data_dir {}: {e}", data_dir.display()))?;
            let mut secret = vec![0u8; MIN_SECRET_BYTES];
            rand::rngs::OsRng
                .try_fill_bytes(&mut secret)
                .map_err(|e| format!("OS random generator failed: {e}"))?;
            match write_private_file(&path, &hex::encode(&secret)) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "generated a new code secret");
                    Ok(secret)
                }
                // Another verifyd sharing the directory created it first: use theirs.
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    parse_secret(&text).map_err(|e| format!("{}: {e}", path.display()))
                }
                Err(error) => Err(format!("cannot write {}: {error}", path.display())),
            }
        }
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// Writes `contents` to `path` only if `path` does not exist, atomically: the file appears
/// complete or not at all (written to a temporary file, synced, then hard-linked into place).
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let directory = path.parent().unwrap_or(Path::new("."));
    let temporary = directory.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret"),
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::hard_link(&temporary, path)
    })();
    let _ = std::fs::remove_file(&temporary);
    result
}

/// Lower-case hex SHA-256 of an API key, as stored in the config.
pub fn hash_api_key(key: &str) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> CodeBook {
        CodeBook::new(vec![7u8; 32])
    }

    #[test]
    fn issued_code_checks_and_is_reproducible_from_its_nonce() {
        let book = book();
        let stored = book.issue(6).unwrap();
        let code = book.code_for(&stored.nonce, 6);
        assert_eq!(code.expose().len(), 6);
        assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
        assert!(book.matches(&stored, code.expose()));
        assert_eq!(
            book.code_for(&stored.nonce, 6),
            code,
            "resend gives the same code"
        );
        let wrong = if code.expose() == "000000" {
            "000001"
        } else {
            "000000"
        };
        assert!(!book.matches(&stored, wrong));
        // Another secret cannot check it.
        assert!(!CodeBook::new(vec![8u8; 32]).matches(&stored, code.expose()));
        // Nothing stored contains the code's digits in clear.
        assert!(!hex::encode(&stored.check).contains(code.expose()) || code.expose().len() < 4);
    }

    #[test]
    fn lengths_four_to_ten_keep_leading_zeros() {
        let book = book();
        for length in 4..=10 {
            let stored = book.issue(length).unwrap();
            assert_eq!(
                book.code_for(&stored.nonce, length).expose().len(),
                length as usize
            );
        }
    }

    #[test]
    fn codes_are_spread_over_all_digits() {
        let book = book();
        let mut counts = [0u32; 10];
        for _ in 0..2000 {
            let stored = book.issue(4).unwrap();
            let code = book.code_for(&stored.nonce, 4);
            counts[(code.expose().as_bytes()[0] - b'0') as usize] += 1;
        }
        // Each leading digit expected 200 times; a broken generator would be far off.
        assert!(
            counts.iter().all(|&n| (120..=280).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn secret_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_secret(None, dir.path()).unwrap();
        let second = load_or_create_secret(None, dir.path()).unwrap();
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(crate::config::SECRET_FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(
            load_or_create_secret(Some("abcd"), dir.path())
                .unwrap_err()
                .contains("at least 32")
        );
    }

    #[test]
    fn api_key_hash_is_sha256_hex() {
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
