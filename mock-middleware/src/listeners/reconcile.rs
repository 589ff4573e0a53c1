//! Making Dovecot agree with the registrations of one user: the reconcile task (one per user
//! at a time, retried once), the IMAP credentials it logs in with (master user, a live
//! session's credential kept encrypted in memory, the credential storage), and the METADATA
//! conversation itself.

use std::sync::Arc;
use std::time::Duration;

use super::creds::{row_ad, Credential};
use super::imap::{Imap, ImapError, METADATA_KEY};
use super::{blocking, Listeners};
use crate::store::registry::StoredCredential;

impl Listeners {
    pub(super) async fn reconcile(self: Arc<Self>, cid: i32, uid: i32, why: String) {
        let lock = self
            .locks
            .lock()
            .expect("locks lock")
            .entry((cid, uid))
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        let retry = Duration::from_millis(self.push.imap.as_ref().map_or(0, |i| i.retry_delay_ms));
        for attempt in 1..=2 {
            let db = self.db.clone();
            let want = match blocking(move || db.registrations()).await {
                Ok(r) => r.iter().any(|r| r.0 == cid && r.1 == uid),
                Err(e) => {
                    tracing::error!(error = %e, "push registrations could not be read");
                    return;
                }
            };
            match self.apply(cid, uid, want).await {
                Ok(()) => {
                    let mut running = self.running.lock().expect("running lock");
                    if want {
                        running.insert((cid, uid));
                        tracing::info!(
                            user = uid,
                            context = cid,
                            reason = %why,
                            "push registration in place (METADATA user={uid}@{cid})"
                        );
                    } else {
                        running.remove(&(cid, uid));
                        tracing::info!(
                            user = uid,
                            context = cid,
                            reason = %why,
                            "push registration removed (METADATA NIL): {why}"
                        );
                    }
                    return;
                }
                Err(Failure::NoCredentials(reason)) => {
                    if !want {
                        self.running
                            .lock()
                            .expect("running lock")
                            .remove(&(cid, uid));
                    }
                    tracing::warn!(
                        user = uid,
                        context = cid,
                        reason = %why,
                        "cannot {} push registration for user={uid}, context={cid}: {reason}",
                        if want { "assert" } else { "remove" }
                    );
                    return;
                }
                Err(Failure::Auth(e)) => {
                    if let Some(store) = &self.creds {
                        let _ = store.delete(cid, uid).await;
                    }
                    self.live.lock().expect("live lock").remove(&(cid, uid));
                    tracing::warn!(user = uid, context = cid, error = %e, "push registration failed: authentication error; stored credentials dropped");
                    return;
                }
                Err(Failure::Other(e)) if attempt == 1 => {
                    tracing::info!(user = uid, context = cid, error = %e, "push registration failed, retrying in {} ms", retry.as_millis());
                    tokio::time::sleep(retry).await;
                }
                Err(Failure::Other(e)) => {
                    tracing::error!(user = uid, context = cid, error = %e, "push registration failed twice; giving up");
                    return;
                }
            }
        }
    }

    pub(super) fn live_put(&self, cid: i32, uid: i32, c: &Credential) {
        let row = StoredCredential {
            login: c.login.clone(),
            password_enc: self.live_cipher.encrypt(&c.password, &row_ad(cid, uid)),
        };
        self.live.lock().expect("live lock").insert((cid, uid), row);
    }

    pub(super) fn live_get(&self, cid: i32, uid: i32) -> Option<Credential> {
        let row = self
            .live
            .lock()
            .expect("live lock")
            .get(&(cid, uid))
            .cloned()?;
        let password = self
            .live_cipher
            .decrypt(&row.password_enc, &row_ad(cid, uid))
            .ok()?;
        Some(Credential {
            login: row.login,
            password,
        })
    }

    async fn credential(&self, cid: i32, uid: i32) -> Result<Credential, Failure> {
        let imap = self.push.imap.as_ref().expect("imap configured");
        if let (Some(mu), Some(mp)) = (&imap.master_user, &imap.master_password) {
            let live = self
                .live
                .lock()
                .expect("live lock")
                .get(&(cid, uid))
                .map(|c| c.login.clone());
            let stored = match live {
                Some(l) => Some(l),
                None => {
                    let db = self.db.clone();
                    blocking(move || db.login_of(cid, uid)).await.ok().flatten()
                }
            };
            let login = stored
                .or_else(|| {
                    self.users
                        .users
                        .iter()
                        .find(|u| u.context_id == cid && u.user_id == uid)
                        .map(|u| u.login.clone())
                })
                .ok_or_else(|| Failure::NoCredentials("the user's login is unknown".into()))?;
            return Ok(Credential {
                login: format!("{login}*{mu}"),
                password: mp.expose().to_string(),
            });
        }
        if let Some(c) = self.live_get(cid, uid) {
            return Ok(c);
        }
        match &self.creds {
            None => Err(Failure::NoCredentials(
                "no live session and com.openexchange.push.credstorage.enabled=false (no master user configured)".into(),
            )),
            Some(store) => match store.get(cid, uid).await {
                Ok(Some(c)) => Ok(c),
                Ok(None) if !store.durable() => Err(Failure::NoCredentials(
                    "no stored credentials: com.openexchange.push.credstorage.rdb=false keeps them in memory only, so they are gone after a restart; the user must log in again".into(),
                )),
                Ok(None) => Err(Failure::NoCredentials("no stored credentials".into())),
                Err(e) => Err(Failure::NoCredentials(e.to_string())),
            },
        }
    }

    async fn apply(&self, cid: i32, uid: i32, want: bool) -> Result<(), Failure> {
        let imap = self.push.imap.as_ref().expect("imap configured");
        let cred = self.credential(cid, uid).await?;
        let mut c = Imap::open(imap, &cred.login, &cred.password)
            .await
            .map_err(|e| match e {
                ImapError::Auth { .. } => Failure::Auth(e),
                e => Failure::Other(e),
            })?;
        let value = format!("user={uid}@{cid}");
        let t = Duration::from_millis(imap.timeout_ms);
        let r = tokio::time::timeout(t, async {
            if !c.capabilities().await?.iter().any(|x| x == "METADATA") {
                return Err(ImapError::NoMetadata);
            }
            let current = c.get_metadata(METADATA_KEY).await?;
            if want {
                if current.as_deref() == Some(value.as_str()) {
                    return Ok(());
                }
                if let Some(other) = &current {
                    tracing::warn!(
                        user = uid,
                        context = cid,
                        "invalid registration {other:?} overwritten"
                    );
                }
                c.set_metadata(METADATA_KEY, Some(&value)).await
            } else if current.is_some() {
                c.set_metadata(METADATA_KEY, None).await
            } else {
                Ok(())
            }
        })
        .await
        .unwrap_or(Err(ImapError::Timeout(imap.timeout_ms)));
        c.logout().await;
        r.map_err(Failure::Other)
    }
}

pub(super) enum Failure {
    NoCredentials(String),
    Auth(ImapError),
    Other(ImapError),
}
