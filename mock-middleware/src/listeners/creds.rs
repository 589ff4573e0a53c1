//! Credential storage (`com.openexchange.push.credstorage.*`): the login and the encrypted
//! password of each user with a permanent listener, in memory or in the database (`rdb`).
//!
//! Default format: AES-256-GCM with a random 96-bit nonce per value, key from Argon2id over
//! passcrypt with a random salt kept in the `meta` table (derived once per process). Optional
//! `mock.credstorage.format=ox-legacy`: OX 7.x `CryptoServiceImpl` (PBKDF2-HMAC-SHA1, fixed salt
//! 0..15, 1000 rounds, AES-128-CBC/PKCS5, zero IV, Base64) for sharing a table with a real OX.
//! Either way a check value encrypted at first use detects a changed passcrypt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::config::push::CredStorageSettings;
use crate::config::CredFormat;
use crate::store::{Store, StoreError, StoredCredential};

const CHECK_PLAIN: &str = "mock-middleware credstorage check v1";
/// Format 1: AES-GCM without associated data (still readable, rewritten on next use).
const AEAD_PREFIX_V1: &str = "mm1$";
/// Format 2: AES-GCM bound to its row: the associated data is `<context>:<user>`, so a value
/// copied to another user's row does not decrypt.
const AEAD_PREFIX: &str = "mm2$";

/// The associated data binding a stored password to its (context, user) row.
pub fn row_ad(cid: i32, uid: i32) -> Vec<u8> {
    format!("{cid}:{uid}").into_bytes()
}

/// A credential-storage failure; the message never contains a password.
#[derive(Debug, thiserror::Error)]
pub enum CredError {
    #[error(
        "com.openexchange.push.credstorage.passcrypt is empty; an empty key would encrypt nothing"
    )]
    EmptyPasscrypt,
    #[error("com.openexchange.push.credstorage.passcrypt does not match the passcrypt the stored credentials were encrypted with; restore the old value (OX: never change it) or delete the credentials")]
    WrongPasscrypt,
    #[error("the stored credentials are in format {stored}, but mock.credstorage.format is {configured}")]
    FormatMismatch { stored: String, configured: String },
    #[error("a stored password cannot be decrypted: {0}")]
    Corrupt(&'static str),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Login and clear-text password; `Debug` hides the password.
#[derive(Clone)]
pub struct Credential {
    pub login: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credential {{ login: {:?}, password: <hidden> }}",
            self.login
        )
    }
}

/// A passcrypt-derived cipher in one of the two formats.
#[derive(Clone)]
pub enum Cipher {
    Aead(Box<aes_gcm::Aes256Gcm>),
    OxLegacy([u8; 16]),
}

/// Argon2id (OWASP minimum: 19 MiB, 2 passes) over passcrypt.
fn argon2_key(passcrypt: &str, salt: &[u8]) -> [u8; 32] {
    let params = argon2::Params::new(19 * 1024, 2, 1, Some(32)).expect("static argon2 params");
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    a.hash_password_into(passcrypt.as_bytes(), salt, &mut key)
        .expect("argon2 with a 16-byte salt");
    key
}

/// OX 7.x key: PBKDF2-HMAC-SHA1, salt 0x00..0x0f, 1000 iterations, 128 bits.
pub fn ox_legacy_key(passcrypt: &str) -> [u8; 16] {
    let salt: Vec<u8> = (0u8..16).collect();
    pbkdf2::pbkdf2_hmac_array::<sha1::Sha1, 16>(passcrypt.as_bytes(), &salt, 1000)
}

impl Cipher {
    pub fn aead(passcrypt: &str, salt: &[u8]) -> Cipher {
        let key = argon2_key(passcrypt, salt);
        Cipher::Aead(Box::new(aes_gcm::Aes256Gcm::new(&key.into())))
    }

    /// AES-256-GCM under a random key that lives only in this process (no KDF needed).
    pub fn random() -> Cipher {
        let key: [u8; 32] = rand::random();
        Cipher::Aead(Box::new(aes_gcm::Aes256Gcm::new(&key.into())))
    }

    /// AES-256-GCM under SHA-256 of a shared secret (the cluster key file: every node of a
    /// cluster reads the same one, so each can decrypt what another stored).
    pub fn from_secret(secret: &str) -> Cipher {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(secret.as_bytes()).into();
        Cipher::Aead(Box::new(aes_gcm::Aes256Gcm::new(&key.into())))
    }

    pub fn ox_legacy(passcrypt: &str) -> Cipher {
        Cipher::OxLegacy(ox_legacy_key(passcrypt))
    }

    /// Encrypts `plain` bound to `ad` (AEAD format only; OX's legacy format has no room for it).
    pub fn encrypt(&self, plain: &str, ad: &[u8]) -> String {
        match self {
            Cipher::Aead(c) => {
                let nonce: [u8; 12] = rand::random();
                let payload = aes_gcm::aead::Payload {
                    msg: plain.as_bytes(),
                    aad: ad,
                };
                let ct = c
                    .encrypt(&nonce.into(), payload)
                    .expect("AES-GCM encryption of a short value");
                let mut out = nonce.to_vec();
                out.extend_from_slice(&ct);
                format!("{AEAD_PREFIX}{}", B64.encode(out))
            }
            Cipher::OxLegacy(key) => {
                use cbc::cipher::{BlockEncryptMut, KeyIvInit};
                let ct = cbc::Encryptor::<aes::Aes128>::new(key.into(), &[0u8; 16].into())
                    .encrypt_padded_vec_mut::<cbc::cipher::block_padding::Pkcs7>(
                    plain.as_bytes(),
                );
                B64.encode(ct)
            }
        }
    }

    /// True when `stored` is in an older format that [`CredStore::get`] rewrites.
    pub fn is_stale(&self, stored: &str) -> bool {
        matches!(self, Cipher::Aead(_)) && stored.starts_with(AEAD_PREFIX_V1)
    }

    /// Decrypts a value encrypted for `ad` (format 1 values carry no associated data).
    pub fn decrypt(&self, stored: &str, ad: &[u8]) -> Result<String, CredError> {
        let bytes = match self {
            Cipher::Aead(c) => {
                let (raw, ad) = match stored.strip_prefix(AEAD_PREFIX) {
                    Some(raw) => (raw, ad),
                    None => (
                        stored
                            .strip_prefix(AEAD_PREFIX_V1)
                            .ok_or(CredError::Corrupt("not in the mock's AEAD format"))?,
                        &b""[..],
                    ),
                };
                let raw = B64
                    .decode(raw)
                    .map_err(|_| CredError::Corrupt("invalid Base64"))?;
                if raw.len() < 12 + 16 {
                    return Err(CredError::Corrupt("too short"));
                }
                let (nonce, ct) = raw.split_at(12);
                let nonce: [u8; 12] = nonce.try_into().expect("split at 12");
                let payload = aes_gcm::aead::Payload { msg: ct, aad: ad };
                c.decrypt(&nonce.into(), payload)
                    .map_err(|_| CredError::WrongPasscrypt)?
            }
            Cipher::OxLegacy(key) => {
                use cbc::cipher::{BlockDecryptMut, KeyIvInit};
                let raw = B64
                    .decode(stored)
                    .map_err(|_| CredError::Corrupt("invalid Base64"))?;
                cbc::Decryptor::<aes::Aes128>::new(key.into(), &[0u8; 16].into())
                    .decrypt_padded_vec_mut::<cbc::cipher::block_padding::Pkcs7>(&raw)
                    .map_err(|_| CredError::WrongPasscrypt)?
            }
        };
        String::from_utf8(bytes).map_err(|_| CredError::WrongPasscrypt)
    }
}

/// Runs a database call on the blocking pool, never on the async executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, CredError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Db(format!("storage task failed: {e}")))??)
}

enum Backend {
    Memory(Mutex<HashMap<(i32, i32), StoredCredential>>),
    Db(Arc<dyn Store>),
}

/// The credential storage; `None` from [`CredStore::open`] when it is disabled.
pub struct CredStore {
    cipher: Cipher,
    backend: Backend,
}

impl CredStore {
    /// Opens the storage: derives the key (slow KDF, once) and checks passcrypt against the
    /// check value stored with rdb credentials.
    pub fn open(
        s: &CredStorageSettings,
        db: &Arc<dyn Store>,
    ) -> Result<Option<CredStore>, CredError> {
        if !s.enabled {
            return Ok(None);
        }
        let passcrypt = s.passcrypt.as_ref().map_or("", |p| p.expose());
        if passcrypt.trim().is_empty() {
            return Err(CredError::EmptyPasscrypt);
        }
        let fmt_name = match s.format {
            CredFormat::Aead => "aead",
            CredFormat::OxLegacy => "ox-legacy",
        };
        if !s.rdb {
            let cipher = match s.format {
                CredFormat::Aead => Cipher::aead(passcrypt, &rand::random::<[u8; 16]>()),
                CredFormat::OxLegacy => Cipher::ox_legacy(passcrypt),
            };
            return Ok(Some(CredStore {
                cipher,
                backend: Backend::Memory(Mutex::default()),
            }));
        }
        if let Some(stored) = db.meta("credstorage.format")? {
            if stored != fmt_name {
                return Err(CredError::FormatMismatch {
                    stored,
                    configured: fmt_name.into(),
                });
            }
        }
        let cipher = match s.format {
            CredFormat::Aead => {
                let salt = match db.meta("credstorage.salt")? {
                    Some(v) => B64
                        .decode(v)
                        .map_err(|_| CredError::Corrupt("invalid salt"))?,
                    None => {
                        // Nodes starting together agree on the first salt written.
                        let salt = B64.encode(rand::random::<[u8; 16]>());
                        B64.decode(db.meta_init("credstorage.salt", &salt)?)
                            .map_err(|_| CredError::Corrupt("invalid salt"))?
                    }
                };
                Cipher::aead(passcrypt, &salt)
            }
            CredFormat::OxLegacy => Cipher::ox_legacy(passcrypt),
        };
        let check = db.meta_init("credstorage.check", &cipher.encrypt(CHECK_PLAIN, b"check"))?;
        if cipher.decrypt(&check, b"check").ok().as_deref() != Some(CHECK_PLAIN) {
            return Err(CredError::WrongPasscrypt);
        }
        let stored = db.meta_init("credstorage.format", fmt_name)?;
        if stored != fmt_name {
            return Err(CredError::FormatMismatch {
                stored,
                configured: fmt_name.into(),
            });
        }
        Ok(Some(CredStore {
            cipher,
            backend: Backend::Db(db.clone()),
        }))
    }

    /// Stores the credential; database work runs on the blocking pool.
    pub async fn put(&self, cid: i32, uid: i32, c: &Credential) -> Result<(), CredError> {
        let row = StoredCredential {
            login: c.login.clone(),
            password_enc: self.cipher.encrypt(&c.password, &row_ad(cid, uid)),
        };
        match &self.backend {
            Backend::Memory(m) => {
                m.lock().expect("creds lock").insert((cid, uid), row);
                Ok(())
            }
            Backend::Db(db) => {
                let db = db.clone();
                blocking(move || db.put_credential(cid, uid, &row)).await
            }
        }
    }

    /// The credential of (context, user); a row in an older format is rewritten in the
    /// current one. Database work runs on the blocking pool.
    pub async fn get(&self, cid: i32, uid: i32) -> Result<Option<Credential>, CredError> {
        let row = match &self.backend {
            Backend::Memory(m) => m.lock().expect("creds lock").get(&(cid, uid)).cloned(),
            Backend::Db(db) => {
                let db = db.clone();
                blocking(move || db.credential(cid, uid)).await?
            }
        };
        let Some(r) = row else {
            return Ok(None);
        };
        let c = Credential {
            password: self.cipher.decrypt(&r.password_enc, &row_ad(cid, uid))?,
            login: r.login.clone(),
        };
        if self.cipher.is_stale(&r.password_enc) {
            self.put(cid, uid, &c).await?;
        }
        Ok(Some(c))
    }

    pub async fn delete(&self, cid: i32, uid: i32) -> Result<(), CredError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.lock().expect("creds lock").remove(&(cid, uid));
                Ok(())
            }
            Backend::Db(db) => {
                let db = db.clone();
                blocking(move || db.delete_credential(cid, uid)).await
            }
        }
    }

    /// True when credentials survive a restart.
    pub fn durable(&self) -> bool {
        matches!(self.backend, Backend::Db(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently with Python's hashlib.pbkdf2_hmac + `openssl enc -aes-128-cbc
    /// -iv 0` (see docs/MOCK-MIDDLEWARE.md): passcrypt "secret", password "s3cr3t-Pässwörd".
    const VECTOR_PASSCRYPT: &str = "secret";
    const VECTOR_PLAIN: &str = "s3cr3t-Pässwörd";
    const VECTOR_KEY_HEX: &str = "b054b25cf15c5e093100214b7cbd9d49";
    const VECTOR_B64: &str = "f6lLvRR41ojeyDbQIhkSQlvWvSKQMMLUnVUTlMzZoKo=";

    #[test]
    fn ox_legacy_matches_known_vector_both_ways() {
        assert_eq!(hex::encode(ox_legacy_key(VECTOR_PASSCRYPT)), VECTOR_KEY_HEX);
        let c = Cipher::ox_legacy(VECTOR_PASSCRYPT);
        assert_eq!(c.encrypt(VECTOR_PLAIN, b"1:3"), VECTOR_B64);
        assert_eq!(c.decrypt(VECTOR_B64, b"1:3").unwrap(), VECTOR_PLAIN);
        assert!(matches!(
            Cipher::ox_legacy("other").decrypt(VECTOR_B64, b""),
            Err(CredError::WrongPasscrypt)
        ));
    }

    #[test]
    fn aead_random_nonce_and_wrong_key_detected() {
        let c = Cipher::aead("pc", &[7u8; 16]);
        let a = c.encrypt("hunter2", b"1:3");
        let b = c.encrypt("hunter2", b"1:3");
        assert_ne!(a, b, "random nonce");
        assert!(!a.contains("hunter2"));
        assert_eq!(c.decrypt(&a, b"1:3").unwrap(), "hunter2");
        let wrong = Cipher::aead("pc2", &[7u8; 16]);
        assert!(matches!(
            wrong.decrypt(&a, b"1:3"),
            Err(CredError::WrongPasscrypt)
        ));
        let dbg = format!(
            "{:?}",
            Credential {
                login: "u".into(),
                password: "hunter2".into()
            }
        );
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }
}
