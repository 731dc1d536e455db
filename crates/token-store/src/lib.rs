//! What every shared token store needs, whatever it stores into: a **key id** that names a
//! provider configuration without revealing it, and **encryption at rest** of the token record.
//!
//! Used by `token-store-redis` (the fleet-wide store) and meant for a future local-disk store.
//! Nothing here does IO beyond asking the operating system for random bytes.
//!
//! # Key id
//!
//! [`derive_kid`] turns the configuration's *fingerprint* (a canonical, secret-free byte string
//! the core builds from the token URL, client id, audience, scopes, organization, subject) into a
//! 64-character lowercase hex string: HMAC-SHA256 keyed with the fixed label
//! `booking-tokens/kid/v1`. It is stable across processes, hosts and versions of this crate (a
//! unit test pins a vector), so every process of a fleet that shares a configuration meets under
//! the same name, and a configuration change moves to a new name instead of reading stale tokens.
//! The kid is not a secret, but it does not reveal the fingerprint either.
//!
//! # Encryption at rest
//!
//! A [`Sealer`] encrypts one key's records with **XChaCha20-Poly1305**
//! (`chacha20poly1305`). Why this AEAD rather than AES-256-GCM:
//! - its 192-bit nonce can be drawn at random for every record without counting: random 96-bit
//!   GCM nonces are only safe up to about 2³² messages per key, and a fleet of processes
//!   sealing under one key cannot coordinate a counter;
//! - it is constant-time in portable software, with no dependence on AES-NI being present;
//! - a nonce reuse under GCM also leaks the authentication key; under ChaCha20-Poly1305 it
//!   breaks only the two records concerned.
//!
//! The blob layout (format version 1) is
//!
//! | bytes | content |
//! |---|---|
//! | 1 | format version, `0x01` |
//! | 24 | random nonce (OS random number generator) |
//! | n + 16 | ciphertext and Poly1305 tag |
//!
//! The associated data binds the record to where it belongs: a label, the format version, the
//! kid and the **generation** the store gives the record. A blob copied to another key, or
//! replayed under another generation, does not open. [`Sealer::open`] returns `None` for
//! anything that does not decrypt (wrong key, wrong kid or generation, truncated, garbage, empty)
//! and never panics: a store treats that as a miss.
//!
//! The encryption key ([`EncryptionKey`]) is either 32 explicit bytes, used as they are, or
//! derived from the client secret with HKDF-SHA256, salted with the kid (so every configuration
//! gets its own key, and anyone who can read the store but does not know the secret cannot
//! decrypt). Keys print as `[redacted]` and are zeroized when dropped.
//!
//! ```
//! use token_store::{derive_kid, EncryptionKey, Sealer};
//!
//! let kid = derive_kid(b"https://auth.example/oauth/token\0client-id\0audience");
//! let sealer = Sealer::new(&EncryptionKey::from_client_secret("s3cret"), &kid);
//! let blob = sealer.seal(7, b"token record").unwrap();
//! assert_eq!(sealer.open(7, &blob).as_deref(), Some(&b"token record"[..]));
//! assert_eq!(sealer.open(8, &blob), None); // another generation
//! assert_eq!(Sealer::new(&EncryptionKey::from_client_secret("other"), &kid).open(7, &blob), None);
//! assert_eq!(format!("{:?}", EncryptionKey::from_client_secret("s3cret")), "EncryptionKey([redacted])");
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// The HMAC key [`derive_kid`] uses: a fixed, public label (the kid is a name, not a secret).
pub const KID_LABEL: &[u8] = b"booking-tokens/kid/v1";

/// The blob format version this crate writes (and the only one it reads).
pub const FORMAT_VERSION: u8 = 1;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;
/// Associated-data label: binds blobs to this crate's purpose.
const AAD_LABEL: &[u8] = b"booking-tokens/store/";
/// HKDF `info` for the key derived from a client secret.
const HKDF_INFO: &[u8] = b"booking-tokens/store-key/v1";

/// The key id of a configuration: lowercase hex HMAC-SHA256 of `fingerprint`, keyed with
/// [`KID_LABEL`]. Always 64 characters of `[0-9a-f]`; stable across processes and versions.
pub fn derive_kid(fingerprint: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(KID_LABEL) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(fingerprint);
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The key that encrypts token records at rest. Prints as `[redacted]`; zeroized on drop.
#[derive(Clone)]
pub struct EncryptionKey(KeySource);

#[derive(Clone)]
enum KeySource {
    Explicit(Zeroizing<[u8; 32]>),
    ClientSecret(Zeroizing<Vec<u8>>),
}

impl EncryptionKey {
    /// An explicit 32-byte key (from a secrets manager, say), used as the AEAD key as it is for
    /// every kid. Every process that shares the store needs the same bytes.
    pub fn explicit(key: [u8; 32]) -> Self {
        let mut key = key;
        let out = Self(KeySource::Explicit(Zeroizing::new(key)));
        key.zeroize();
        out
    }

    /// An explicit key given as base64 (standard or URL-safe, padded or not) of 32 bytes, e.g.
    /// from an environment variable.
    pub fn from_base64(text: &str) -> Result<Self, InvalidKey> {
        use base64::Engine as _;
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

    /// A key derived from the configuration's client secret: HKDF-SHA256 with the kid as salt
    /// and `booking-tokens/store-key/v1` as info. Every process with the same configuration
    /// derives the same key; a reader of the store without the secret cannot decrypt.
    ///
    /// An empty secret (a public client) gives a key anyone with the kid can derive: use
    /// [`EncryptionKey::explicit`] for such clients.
    pub fn from_client_secret(secret: &str) -> Self {
        Self(KeySource::ClientSecret(Zeroizing::new(
            secret.as_bytes().to_vec(),
        )))
    }

    fn for_kid(&self, kid: &str) -> Zeroizing<[u8; 32]> {
        match &self.0 {
            KeySource::Explicit(key) => key.clone(),
            KeySource::ClientSecret(secret) => {
                let mut okm = Zeroizing::new([0u8; 32]);
                let hkdf = Hkdf::<Sha256>::new(Some(kid.as_bytes()), secret);
                // 32 bytes is far below HKDF-SHA256's 255 * 32 byte limit: this cannot fail.
                if hkdf.expand(HKDF_INFO, okm.as_mut()).is_err() {
                    unreachable!("HKDF-SHA256 expands to 32 bytes");
                }
                okm
            }
        }
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([redacted])")
    }
}

/// An encryption key that is not 32 bytes of base64.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an encryption key must be 32 bytes, base64-encoded")]
pub struct InvalidKey;

/// Why [`Sealer::seal`] could not seal a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The operating system's random number generator gave no nonce.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    /// The AEAD refused the plaintext (larger than XChaCha20-Poly1305 can encrypt).
    #[error("the record is too large to encrypt")]
    TooLarge,
}

/// Encrypts and decrypts one kid's records (see the [crate docs](crate) for the format).
///
/// Cheap to clone; `Send + Sync`. Prints its kid, never its key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    kid: String,
}

impl Sealer {
    /// A sealer for the records of `kid` under `key`.
    pub fn new(key: &EncryptionKey, kid: &str) -> Self {
        let key_bytes = key.for_kid(kid);
        let cipher = XChaCha20Poly1305::new(key_bytes.as_ref().into());
        Self {
            cipher,
            kid: kid.to_owned(),
        }
    }

    /// The kid this sealer binds its records to.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Encrypts `plaintext` as the record of `generation`, under a fresh random nonce.
    pub fn seal(&self, generation: u64, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
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
            .map_err(|_| SealError::TooLarge)?;
        let mut blob = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        blob.push(FORMAT_VERSION);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(blob)
    }

    /// Decrypts a blob sealed for `generation` by a sealer with the same key and kid. `None` for
    /// anything else: another key, kid, generation or format version, a truncated or altered
    /// blob, garbage, an empty slice. Never panics.
    pub fn open(&self, generation: u64, blob: &[u8]) -> Option<Vec<u8>> {
        if blob.len() < HEADER_LEN + TAG_LEN || blob[0] != FORMAT_VERSION {
            return None;
        }
        let (nonce, ciphertext) = blob[1..].split_at(NONCE_LEN);
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

    /// label || version || kid length (u32, big-endian) || kid || generation (u64, big-endian)
    fn aad(&self, generation: u64) -> Vec<u8> {
        let kid = self.kid.as_bytes();
        let mut aad = Vec::with_capacity(AAD_LABEL.len() + 1 + 4 + kid.len() + 8);
        aad.extend_from_slice(AAD_LABEL);
        aad.push(FORMAT_VERSION);
        // A kid longer than 4 GiB would saturate the length, not wrap it.
        aad.extend_from_slice(&u32::try_from(kid.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(kid);
        aad.extend_from_slice(&generation.to_be_bytes());
        aad
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("kid", &self.kid)
            .field("key", &format_args!("[redacted]"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kid_is_a_fixed_vector() {
        // Pinned: changing the label, the MAC or the encoding moves every fleet to new keys.
        assert_eq!(
            derive_kid(b"https://auth.example/oauth/token\0client-1"),
            "27fc9986690f55ba3432426d29137eb1210c1db38fd2a8c0a6e51709fc3dc89c"
        );
        let kid = derive_kid(b"");
        assert_eq!(kid.len(), 64);
        assert!(
            kid.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_ne!(derive_kid(b"a"), derive_kid(b"b"));
    }

    #[test]
    fn a_pinned_blob_still_opens() {
        // Sealed by version 0.1.0: the key derivation, associated data and layout are stable.
        let blob = unhex(
            "014b2204c0779dd4f6a22492df79143396f459aa9870820be8b58b6fc4a5d2bf\
             2ebd8072c79c3c125b0ad301a424c9297c99044e8374",
        );
        let sealer = Sealer::new(
            &EncryptionKey::from_client_secret("pinned-secret"),
            &derive_kid(b"pinned"),
        );
        assert_eq!(
            sealer.open(42, &blob).as_deref(),
            Some(&b"pinned record"[..])
        );
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn round_trip_and_binding() {
        let kid = derive_kid(b"config");
        let sealer = Sealer::new(&EncryptionKey::from_client_secret("secret"), &kid);
        let blob = sealer.seal(3, b"hello").unwrap();
        assert_eq!(blob.len(), HEADER_LEN + 5 + TAG_LEN);
        assert_eq!(blob[0], FORMAT_VERSION);
        assert_eq!(sealer.open(3, &blob).as_deref(), Some(&b"hello"[..]));
        // Same key, same kid, recreated: opens (another process).
        let again = Sealer::new(&EncryptionKey::from_client_secret("secret"), &kid);
        assert_eq!(again.open(3, &blob).as_deref(), Some(&b"hello"[..]));
        // Wrong generation, kid, key.
        assert_eq!(sealer.open(4, &blob), None);
        let other_kid = Sealer::new(
            &EncryptionKey::from_client_secret("secret"),
            &derive_kid(b"x"),
        );
        assert_eq!(other_kid.open(3, &blob), None);
        let other_key = Sealer::new(&EncryptionKey::from_client_secret("secreT"), &kid);
        assert_eq!(other_key.open(3, &blob), None);
        let explicit = Sealer::new(&EncryptionKey::explicit([7; 32]), &kid);
        assert_eq!(explicit.open(3, &blob), None);
        // Truncated, altered, empty, other version.
        assert_eq!(sealer.open(3, &blob[..blob.len() - 1]), None);
        assert_eq!(sealer.open(3, &[]), None);
        let mut altered = blob.clone();
        altered[HEADER_LEN] ^= 1;
        assert_eq!(sealer.open(3, &altered), None);
        let mut version = blob.clone();
        version[0] = 2;
        assert_eq!(sealer.open(3, &version), None);
    }

    #[test]
    fn explicit_key_is_used_for_every_kid_and_nonces_differ() {
        let key = EncryptionKey::explicit([42; 32]);
        let a = Sealer::new(&key, "a");
        let b = Sealer::new(&key, "b");
        let blob = a.seal(1, b"").unwrap();
        assert_eq!(a.open(1, &blob).as_deref(), Some(&b""[..]));
        assert_eq!(b.open(1, &blob), None, "the kid is in the associated data");
        assert_ne!(a.seal(1, b"same").unwrap(), a.seal(1, b"same").unwrap());
    }

    #[test]
    fn debug_never_prints_keys() {
        let key = EncryptionKey::from_client_secret("hunter2");
        assert_eq!(format!("{key:?}"), "EncryptionKey([redacted])");
        let explicit = EncryptionKey::explicit([0x41; 32]);
        assert_eq!(format!("{explicit:?}"), "EncryptionKey([redacted])");
        let sealer = Sealer::new(&key, "kid");
        let printed = format!("{sealer:?}");
        assert_eq!(printed, r#"Sealer { kid: "kid", key: [redacted] }"#);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(blob in proptest::collection::vec(any::<u8>(), 0..200), generation: u64) {
            let sealer = Sealer::new(&EncryptionKey::explicit([1; 32]), "kid");
            prop_assert_eq!(sealer.open(generation, &blob), None);
        }

        #[test]
        fn versioned_garbage_never_opens(tail in proptest::collection::vec(any::<u8>(), 0..200), generation: u64) {
            let sealer = Sealer::new(&EncryptionKey::explicit([1; 32]), "kid");
            let mut blob = vec![FORMAT_VERSION];
            blob.extend(tail);
            prop_assert_eq!(sealer.open(generation, &blob), None);
        }

        #[test]
        fn round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..300), generation: u64, secret in ".{0,40}") {
            let sealer = Sealer::new(&EncryptionKey::from_client_secret(&secret), "kid");
            let blob = sealer.seal(generation, &plaintext).unwrap();
            prop_assert_eq!(sealer.open(generation, &blob), Some(plaintext));
            prop_assert_eq!(sealer.open(generation.wrapping_add(1), &blob), None);
        }
    }
}
