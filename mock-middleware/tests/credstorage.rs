//! Credential storage against a real SQLite file: encrypted at rest, wrong passcrypt refused,
//! missing passcrypt refused with OX's start-up message.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mock_middleware::config::push::{CredStorageSettings, MISSING_PASSCRYPT};
use mock_middleware::config::{CredFormat, Properties, Settings};
use mock_middleware::listeners::creds::{Cipher, CredError, CredStore, Credential};
use mock_middleware::store::{Store, StoredCredential};

const PASSWORD: &str = "correct-horse-battery-staple-42";

fn settings(passcrypt: &str, format: CredFormat) -> CredStorageSettings {
    CredStorageSettings {
        enabled: true,
        passcrypt: Some(passcrypt.into()),
        rdb: true,
        format,
    }
}

fn file_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        all.extend(std::fs::read(e.path()).unwrap());
    }
    all
}

#[tokio::test]
async fn encrypted_at_rest_and_wrong_passcrypt_is_a_clear_error() {
    for format in [CredFormat::Aead, CredFormat::OxLegacy] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let db = mock_middleware::store::open_sqlite(&path).unwrap();
        let store = CredStore::open(&settings("pc-1", format), &db)
            .unwrap()
            .unwrap();
        let cred = Credential {
            login: "alice".into(),
            password: PASSWORD.into(),
        };
        store.put(1, 3, &cred).await.unwrap();
        assert_eq!(store.get(1, 3).await.unwrap().unwrap().password, PASSWORD);
        drop(store);
        drop(db);
        let bytes = file_bytes(dir.path());
        assert!(
            !bytes
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "{format:?}: password in clear in the SQLite files"
        );
        let db = mock_middleware::store::open_sqlite(&path).unwrap();
        let again = CredStore::open(&settings("pc-1", format), &db)
            .unwrap()
            .unwrap();
        assert_eq!(again.get(1, 3).await.unwrap().unwrap().password, PASSWORD);
        let err = CredStore::open(&settings("pc-2", format), &db)
            .err()
            .expect("wrong passcrypt refused");
        assert!(matches!(err, CredError::WrongPasscrypt), "{err}");
        assert!(
            err.to_string().contains("passcrypt does not match"),
            "{err}"
        );
        let other = if format == CredFormat::Aead {
            CredFormat::OxLegacy
        } else {
            CredFormat::Aead
        };
        let err = CredStore::open(&settings("pc-1", other), &db)
            .err()
            .expect("format switch refused");
        assert!(err.to_string().contains("mock.credstorage.format"), "{err}");
    }
}

#[tokio::test]
async fn missing_passcrypt_fails_startup_with_ox_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Properties::default();
    p.merge_text(
        "mock.http.listen=127.0.0.1:0\nmock.admin.listen=127.0.0.1:0\nmock.db=db.sqlite\ncom.openexchange.push.credstorage.enabled=true\n",
        &dir.path().join("mock.properties"),
    );
    let s = Settings::from_properties(&p, dir.path()).unwrap();
    let err = mock_middleware::server::start(s)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.to_string(), MISSING_PASSCRYPT);
    assert_eq!(
        MISSING_PASSCRYPT,
        "Property \"com.openexchange.push.credstorage.enabled\" set to \"true\", but missing value for \"com.openexchange.push.credstorage.passcrypt\" property."
    );
}

fn cred() -> Credential {
    Credential {
        login: "alice".into(),
        password: PASSWORD.into(),
    }
}

/// A database with credstorage (AEAD) and alice's credential at (context 1, user 3).
async fn store_with_alice(dir: &Path) -> (Arc<dyn Store>, CredStore) {
    let db = mock_middleware::store::open_sqlite(&dir.join("db.sqlite")).unwrap();
    let store = CredStore::open(&settings("pc-1", CredFormat::Aead), &db)
        .unwrap()
        .unwrap();
    store.put(1, 3, &cred()).await.unwrap();
    (db, store)
}

#[tokio::test]
async fn tampered_context_user_swap_of_a_stored_credential_fails_to_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let (db, store) = store_with_alice(dir.path()).await;
    // An attacker with write access to the table copies alice's row to user 4 of context 2.
    let row = db.credential(1, 3).unwrap().unwrap();
    db.put_credential(2, 4, &row).unwrap();
    let err = store.get(2, 4).await.expect_err("swapped row refused");
    assert!(matches!(err, CredError::WrongPasscrypt), "{err}");
    assert_eq!(store.get(1, 3).await.unwrap().unwrap().password, PASSWORD);
}

#[tokio::test]
async fn rows_of_the_old_format_are_still_read_and_rewritten_bound_to_their_row() {
    let dir = tempfile::tempdir().unwrap();
    let (db, store) = store_with_alice(dir.path()).await;
    // Format 1 (no associated data): what the previous version stored.
    let salt = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(db.meta("credstorage.salt").unwrap().unwrap())
            .unwrap()
    };
    let v2 = Cipher::aead("pc-1", &salt)
        .encrypt(PASSWORD, b"")
        .replace("mm2$", "mm1$");
    let old = StoredCredential {
        login: "alice".into(),
        password_enc: v2,
    };
    db.put_credential(1, 3, &old).unwrap();
    assert_eq!(store.get(1, 3).await.unwrap().unwrap().password, PASSWORD);
    let now = db.credential(1, 3).unwrap().unwrap().password_enc;
    assert!(now.starts_with("mm2$"), "rewritten: {now}");
}

#[test]
fn empty_passcrypt_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = mock_middleware::store::open_sqlite(&dir.path().join("db.sqlite")).unwrap();
    for p in ["", "   "] {
        let err = CredStore::open(&settings(p, CredFormat::Aead), &db)
            .err()
            .expect("empty passcrypt refused");
        assert!(matches!(err, CredError::EmptyPasscrypt), "{err}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn credential_storage_calls_do_not_block_the_executor() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, store) = store_with_alice(dir.path()).await;
    // Another connection holds the database for 1.5 s; the storage's calls wait for it.
    let path = dir.path().join("db.sqlite");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        c.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    // On this single-threaded runtime a blocking call would stop the ticker.
    let ticks = Arc::new(AtomicU32::new(0));
    let t2 = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            t2.fetch_add(1, Ordering::Relaxed);
        }
    });
    let started = Instant::now();
    store.put(1, 3, &cred()).await.unwrap();
    assert_eq!(store.get(1, 3).await.unwrap().unwrap().password, PASSWORD);
    let waited = started.elapsed();
    ticker.abort();
    holder.join().unwrap();
    assert!(
        waited >= Duration::from_millis(1000),
        "the lock was held: {waited:?}"
    );
    let n = ticks.load(Ordering::Relaxed);
    assert!(
        n >= 50,
        "the executor stalled while SQLite waited: {n} ticks in {waited:?}"
    );
}
