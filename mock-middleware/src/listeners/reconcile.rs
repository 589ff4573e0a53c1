//! Making Dovecot agree with the registrations of one user: the reconcile task (one per user
//! at a time, retried once), the IMAP credentials it logs in with (master user, a live
//! session's credential kept encrypted in memory, the credential storage), and the METADATA
//! conversation itself.

use std::sync::Arc;
use std::time::Duration;

use super::creds::Credential;
use super::imap::{Imap, ImapError, METADATA_KEY};
use super::Listeners;

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
        // Only the lease's owner talks to Dovecot for this user; a lease that moved meanwhile
        // hands the work to its new owner.
        if !self.own_or_forward(cid, uid, &why).await {
            return;
        }
        let retry = Duration::from_millis(self.push.imap.as_ref().map_or(0, |i| i.retry_delay_ms));
        for attempt in 1..=2 {
            let want = match self.blocking(|db| db.registrations()).await {
                Ok(r) => r.iter().any(|r| r.0 == cid && r.1 == uid),
                Err(e) => {
                    tracing::error!(error = %e, "push registrations could not be read");
                    return;
                }
            };
            match self.apply(cid, uid, want).await {
                Ok(()) => {
                    self.settled(cid, uid, want).await;
                    if want {
                        tracing::info!(
                            user = uid,
                            context = cid,
                            reason = %why,
                            "push registration in place (METADATA user={uid}@{cid})"
                        );
                    } else {
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
                        self.settled(cid, uid, false).await;
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
                    self.live.forget(cid, uid).await;
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

    /// Records the outcome in the lease: asserted, or (nothing wanted) the lease released.
    async fn settled(&self, cid: i32, uid: i32, want: bool) {
        let node = self.node.clone();
        let r = self
            .blocking(move |db| {
                db.set_asserted(cid, uid, &node, want)?;
                if !want {
                    db.release_lease(cid, uid, &node)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(user = uid, context = cid, error = %e, "lease state not recorded");
        }
    }

    async fn credential(&self, cid: i32, uid: i32) -> Result<Credential, Failure> {
        let imap = self.push.imap.as_ref().expect("imap configured");
        if let (Some(mu), Some(mp)) = (&imap.master_user, &imap.master_password) {
            let stored = match self.live.login(cid, uid).await {
                Some(l) => Some(l),
                None => self
                    .blocking(move |db| db.login_of(cid, uid))
                    .await
                    .ok()
                    .flatten(),
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
        if let Some(c) = self.live.get(cid, uid).await {
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
        let _slot = self
            .imap_slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
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
