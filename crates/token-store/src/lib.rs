//! What the shared token stores (`token-store-redis`, `token-store-disk`) have in common: how
//! a credential's key name is derived, and how its record is encrypted at rest.
//!
//! - **Key names** ([`derive_kid`]): the lowercase hex HMAC-SHA256 of the configuration's
//!   fingerprint (token URL, client id, audience, scopes, subject, organization; never a
//!   secret) under a fixed label, so every process with the same configuration meets on the same
//!   name, and the name reveals nothing of the configuration.
//! - **Encryption** ([`Sealer`]): XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`) with a
//!   random 192-bit nonce per record and associated data binding the record to its format
//!   version, key name and generation (a record copied to another key or generation does not
//!   decrypt). XChaCha rather than AES-256-GCM: its 192-bit nonces can be drawn at random without
//!   ever worrying about collisions, and it is constant-time in software on any CPU. The key is
//!   derived per key name with HKDF-SHA256 from either an explicit 32-byte key or the client's
//!   secret ([`EncryptionKey`]). Anything that does not decrypt (a wrong key, a truncated or
//!   foreign blob) is `None`: a miss, never an error and never a panic.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The format version of sealed records (the first byte of every blob).
const VERSION: u8 = 1;
const NONCE: usize = 24;
const KID_LABEL: &[u8] = b"booking-tokens/kid/v1";
const HKDF_INFO: &[u8] = b"booking-tokens/store/v1";

/// The store key name of a configuration fingerprint: lowercase hex HMAC-SHA256 under a fixed
/// label (64 characters). Stable across processes and versions.
pub fn derive_kid(fingerprint: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(KID_LABEL)
        .expect("invariant: HMAC takes keys of any length");
    mac.update(fingerprint);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    hex
}

/// Where a store's encryption key comes from. `Debug` prints `[redacted]`.
#[derive(Clone)]
pub struct EncryptionKey(KeyMaterial);

#[derive(Clone)]
enum KeyMaterial {
    Explicit([u8; 32]),
    ClientSecret(Vec<u8>),
}

/// An encryption key that is not 32 bytes of base64.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an encryption key must be 32 bytes, base64-encoded")]
pub struct InvalidKey;

impl EncryptionKey {
    /// An explicit 32-byte key (from a secret manager).
    pub fn explicit(key: [u8; 32]) -> Self {
        Self(KeyMaterial::Explicit(key))
    }

    /// An explicit key given as base64 (standard or URL-safe, padded or not) of 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, InvalidKey> {
        let text = text.trim();
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        engines
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Self::explicit)
            .ok_or(InvalidKey)
    }

    /// A key derived from the client's secret: every process with the same configuration and
    /// secret derives the same key, and nobody without the secret can read the records.
    pub fn from_client_secret(secret: &str) -> Self {
        Self(KeyMaterial::ClientSecret(secret.as_bytes().to_vec()))
    }

    fn material(&self) -> &[u8] {
        match &self.0 {
            KeyMaterial::Explicit(key) => key,
            KeyMaterial::ClientSecret(secret) => secret,
        }
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([redacted])")
    }
}

/// Seals and opens the records of one key name.
pub struct Sealer {
    kid: String,
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// The sealer of key name `kid` under `key` (HKDF-SHA256, salted with the key name).
    pub fn new(key: &EncryptionKey, kid: &str) -> Self {
        let hkdf = hkdf::Hkdf::<Sha256>::new(Some(kid.as_bytes()), key.material());
        let mut derived = [0u8; 32];
        hkdf.expand(HKDF_INFO, &mut derived)
            .expect("invariant: 32 bytes is a valid HKDF-SHA256 output length");
        let cipher = XChaCha20Poly1305::new(&derived.into());
        derived.fill(0);
        Self {
            kid: kid.to_owned(),
            cipher,
        }
    }

    fn aad(&self, generation: u64) -> Vec<u8> {
        let mut aad = Vec::with_capacity(1 + self.kid.len() + 8);
        aad.push(VERSION);
        aad.extend_from_slice(self.kid.as_bytes());
        aad.extend_from_slice(&generation.to_be_bytes());
        aad
    }

    /// Encrypts `plaintext` as generation `generation` of this key: version, nonce,
    /// ciphertext and tag.
    pub fn seal(&self, generation: u64, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).expect("invariant: the operating system provides randomness");
        let aad = self.aad(generation);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("invariant: XChaCha20-Poly1305 encrypts any message that fits in memory");
        let mut blob = Vec::with_capacity(1 + NONCE + ciphertext.len());
        blob.push(VERSION);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        blob
    }

    /// Decrypts a blob sealed as generation `generation` of this key; `None` for anything else
    /// (a wrong key, kid or generation; a truncated, foreign or empty blob).
    pub fn open(&self, generation: u64, blob: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = blob.split_first()?;
        if version != VERSION || rest.len() < NONCE {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE);
        let aad = self.aad(generation);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KID_OF_ABC: &str = "0525488a73c9af2a68545969790227a093bdb36574e602344786ab874be43164";

    #[test]
    fn kids_are_stable_and_secret_free() {
        let kid = derive_kid(b"booking-tokens/fingerprint/1\ngeneric\n");
        assert_eq!(kid.len(), 64);
        assert!(
            kid.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(kid, derive_kid(b"booking-tokens/fingerprint/1\ngeneric\n"));
        assert_ne!(kid, derive_kid(b"booking-tokens/fingerprint/1\ngeneric\nx"));
        // A fixed vector (HMAC-SHA256 with key "booking-tokens/kid/v1" of "abc"): changing the
        // derivation would move every store's key names.
        assert_eq!(derive_kid(b"abc"), KID_OF_ABC);
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let key = EncryptionKey::from_client_secret("s3cret");
        let sealer = Sealer::new(&key, "kid-a");
        let blob = sealer.seal(7, b"token record");
        assert_eq!(sealer.open(7, &blob).as_deref(), Some(&b"token record"[..]));
        // Another generation, key name or key: nothing.
        assert_eq!(sealer.open(8, &blob), None);
        assert_eq!(Sealer::new(&key, "kid-b").open(7, &blob), None);
        let other = EncryptionKey::from_client_secret("other");
        assert_eq!(Sealer::new(&other, "kid-a").open(7, &blob), None);
        let explicit = EncryptionKey::explicit([1; 32]);
        assert_eq!(Sealer::new(&explicit, "kid-a").open(7, &blob), None);
        // Truncated, flipped, empty.
        assert_eq!(sealer.open(7, &blob[..blob.len() - 1]), None);
        let mut flipped = blob.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(sealer.open(7, &flipped), None);
        assert_eq!(sealer.open(7, &[]), None);
        // The plaintext is nowhere in the blob; two seals differ (random nonces).
        assert!(!blob.windows(12).any(|w| w == b"token record"));
        assert_ne!(blob, sealer.seal(7, b"token record"));
        assert!(!format!("{key:?} {sealer:?}").contains("s3cret"));
    }

    #[test]
    fn keys_from_base64() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert!(EncryptionKey::from_base64(&b64).is_ok());
        assert!(EncryptionKey::from_base64(b64.trim_end_matches('=')).is_ok());
        assert_eq!(EncryptionKey::from_base64("short").unwrap_err(), InvalidKey);
        assert!(
            EncryptionKey::from_base64(
                &base64::engine::general_purpose::STANDARD.encode([9u8; 31])
            )
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn arbitrary_blobs_never_open_and_never_panic(blob in proptest::collection::vec(any::<u8>(), 0..200), generation: u64) {
            let sealer = Sealer::new(&EncryptionKey::explicit([3; 32]), "kid");
            prop_assert_eq!(sealer.open(generation, &blob), None);
        }
    }
}
