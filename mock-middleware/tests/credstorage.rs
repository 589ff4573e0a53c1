//! Credential storage against a real SQLite file: encrypted at rest, wrong passcrypt refused,
//! missing passcrypt refused with OX's start-up message.

use std::path::Path;
use std::sync::Arc;

use mock_middleware::config::push::{CredStorageSettings, MISSING_PASSCRYPT};
use mock_middleware::config::{CredFormat, Properties, Settings};
use mock_middleware::listeners::creds::{CredError, CredStore, Credential};
use mock_middleware::store::SqliteStore;

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

#[test]
fn encrypted_at_rest_and_wrong_passcrypt_is_a_clear_error() {
    for format in [CredFormat::Aead, CredFormat::OxLegacy] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let db = Arc::new(SqliteStore::open(&path).unwrap());
        let store = CredStore::open(&settings("pc-1", format), &db)
            .unwrap()
            .unwrap();
        let cred = Credential {
            login: "alice".into(),
            password: PASSWORD.into(),
        };
        store.put(1, 3, &cred).unwrap();
        assert_eq!(store.get(1, 3).unwrap().unwrap().password, PASSWORD);
        drop(store);
        drop(db);
        let bytes = file_bytes(dir.path());
        assert!(
            !bytes
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "{format:?}: password in clear in the SQLite files"
        );
        let db = Arc::new(SqliteStore::open(&path).unwrap());
        let again = CredStore::open(&settings("pc-1", format), &db)
            .unwrap()
            .unwrap();
        assert_eq!(again.get(1, 3).unwrap().unwrap().password, PASSWORD);
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
