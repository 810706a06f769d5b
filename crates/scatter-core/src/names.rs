//! Deterministic encryption of object names, one `/`-separated component at a time.
//!
//! Each component is sealed with AES-SIV (deterministic authenticated encryption, RFC 5297)
//! under the user's name key, with the already-encrypted parent path as associated data, then
//! written as unpadded base64url. The same name always encrypts to the same text, so the
//! coordinator can look names up and list by prefix, but equal components under different
//! parents look unrelated, and nothing about a name is readable without the key.
//!
//! An object version's attributes (the S3 gateway's ETag, content type, user metadata) are
//! sealed beside its name ([`NameKey::seal_attributes`]): AES-SIV under a key derived from
//! the name key, with a random nonce (equal attributes do not look equal) and the encrypted
//! name as associated data (attributes cannot be moved to another object).

use aes_siv::siv::Aes256Siv;
use aes_siv::KeyInit;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use zeroize::Zeroizing;

/// Why an encrypted name could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an encrypted name could not be decrypted (it belongs to another key or is damaged)")]
pub struct NameError;

/// The key that encrypts object names.
#[derive(Clone)]
pub struct NameKey(Zeroizing<[u8; 64]>);

impl std::fmt::Debug for NameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameKey(<redacted>)")
    }
}

impl NameKey {
    pub(crate) fn new(bytes: &[u8; 64]) -> Self {
        Self(Zeroizing::new(*bytes))
    }

    fn siv(&self) -> Aes256Siv {
        Aes256Siv::new_from_slice(&*self.0).expect("AES-256-SIV takes a 64-byte key")
    }

    /// Encrypts a name, component by component.
    pub fn encrypt(&self, name: &str) -> String {
        let mut siv = self.siv();
        let mut out = String::new();
        for (i, component) in name.split('/').enumerate() {
            let ct = siv.encrypt([out.as_bytes()], component.as_bytes()).expect("AES-SIV encrypts any name component");
            if i > 0 {
                out.push('/');
            }
            out.push_str(&URL_SAFE_NO_PAD.encode(ct));
        }
        out
    }

    /// The key attributes are sealed under: derived from the name key, never equal to it.
    fn attributes_siv(&self) -> Aes256Siv {
        let mut key = Zeroizing::new([0u8; 64]);
        let mut h = blake3::Hasher::new_derive_key("scatter object attributes v1");
        h.update(&*self.0);
        h.finalize_xof().fill(&mut *key);
        Aes256Siv::new_from_slice(&*key).expect("AES-256-SIV takes a 64-byte key")
    }

    /// Seals `attributes` of an object version named `encrypted_name` (as
    /// [`NameKey::encrypt`] gave it): nonce (16 bytes) then ciphertext.
    pub fn seal_attributes(&self, encrypted_name: &str, attributes: &[u8]) -> Vec<u8> {
        let nonce: [u8; ATTRIBUTE_NONCE] = rand::random();
        let ct = self
            .attributes_siv()
            .encrypt([encrypted_name.as_bytes(), &nonce[..]], attributes)
            .expect("AES-SIV encrypts any attributes");
        let mut out = Vec::with_capacity(ATTRIBUTE_NONCE + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens attributes sealed by [`NameKey::seal_attributes`] for `encrypted_name`.
    pub fn open_attributes(&self, encrypted_name: &str, sealed: &[u8]) -> Result<Vec<u8>, NameError> {
        if sealed.len() < ATTRIBUTE_NONCE {
            return Err(NameError);
        }
        let (nonce, ct) = sealed.split_at(ATTRIBUTE_NONCE);
        self.attributes_siv().decrypt([encrypted_name.as_bytes(), nonce], ct).map_err(|_| NameError)
    }

    /// Decrypts a name made by [`NameKey::encrypt`].
    pub fn decrypt(&self, encrypted: &str) -> Result<String, NameError> {
        let mut siv = self.siv();
        let mut name = String::new();
        for (i, component) in encrypted.split('/').enumerate() {
            let parent = &encrypted[..encrypted.len().min(parent_len(encrypted, i))];
            let ct = URL_SAFE_NO_PAD.decode(component).map_err(|_| NameError)?;
            let plain = siv.decrypt([parent.as_bytes()], &ct).map_err(|_| NameError)?;
            if i > 0 {
                name.push('/');
            }
            name.push_str(std::str::from_utf8(&plain).map_err(|_| NameError)?);
        }
        Ok(name)
    }
}

/// Bytes of the random nonce in front of sealed attributes.
const ATTRIBUTE_NONCE: usize = 16;

/// Length of the first `n` components of `path` joined by `/`.
fn parent_len(path: &str, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    path.match_indices('/').nth(n - 1).map(|(i, _)| i).unwrap_or(path.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> NameKey {
        NameKey::new(&[b; 64])
    }

    #[test]
    fn names_round_trip() {
        let k = key(1);
        for name in ["a", "", "photos/2026/cat.jpg", "/etc/passwd", "dir/", "ünïcødé/名前"] {
            let ct = k.encrypt(name);
            assert_eq!(k.decrypt(&ct).as_deref(), Ok(name), "{name:?} -> {ct}");
            assert_eq!(ct.matches('/').count(), name.matches('/').count());
        }
    }

    #[test]
    fn encryption_is_deterministic_and_prefix_preserving() {
        let k = key(1);
        assert_eq!(k.encrypt("a/b"), k.encrypt("a/b"));
        let dir = k.encrypt("photos");
        assert!(k.encrypt("photos/x.jpg").starts_with(&format!("{dir}/")));
        // The same component under another parent looks unrelated.
        let x1 = k.encrypt("a/x").rsplit('/').next().map(str::to_owned);
        let x2 = k.encrypt("b/x").rsplit('/').next().map(str::to_owned);
        assert_ne!(x1, x2);
    }

    #[test]
    fn attributes_are_bound_to_their_name_and_randomised() {
        let k = key(1);
        let name = k.encrypt("bucket/key");
        let a = k.seal_attributes(&name, b"etag");
        assert_ne!(a, k.seal_attributes(&name, b"etag"), "a fresh nonce each time");
        assert_eq!(k.open_attributes(&name, &a).as_deref(), Ok(&b"etag"[..]));
        // Another object's name, another key, a flipped bit or a short blob: refused.
        assert_eq!(k.open_attributes(&k.encrypt("bucket/other"), &a), Err(NameError));
        assert_eq!(key(2).open_attributes(&name, &a), Err(NameError));
        let mut bad = a.clone();
        bad[20] ^= 1;
        assert_eq!(k.open_attributes(&name, &bad), Err(NameError));
        assert_eq!(k.open_attributes(&name, &a[..10]), Err(NameError));
    }

    #[test]
    fn wrong_key_or_tampering_fails() {
        let ct = key(1).encrypt("secret/name");
        assert_eq!(key(2).decrypt(&ct), Err(NameError));
        let mut bad = ct.clone().into_bytes();
        bad[3] = if bad[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(key(1).decrypt(&String::from_utf8(bad).expect("ascii")), Err(NameError));
        assert_eq!(key(1).decrypt("!!!"), Err(NameError));
    }
}
