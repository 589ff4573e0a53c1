//! One device, one push ([`targets`]), and the claim of a notification with an
//! `X-Notification-Id` that a job holds until its pushes are done ([`ClaimTicket`]).

use std::sync::Arc;
use std::time::Duration;

use crate::store::{now_ms, Subscription};

/// The mail subscriptions of `subs`, one per device: a token subscribed under two clients gets
/// the mail once (a user has few devices: a linear check).
pub fn targets(subs: Vec<Arc<Subscription>>) -> Vec<Arc<Subscription>> {
    let mut out: Vec<Arc<Subscription>> = Vec::with_capacity(subs.len());
    for x in subs {
        let dup = out
            .iter()
            .any(|y| y.transport == x.transport && y.token == x.token);
        if x.matches_topic("ox:mail:new") && !dup {
            out.push(x);
        }
    }
    out
}

/// A claimed notification ([`crate::store::Shared::claim`]); dropping it marks the claim done,
/// retried for up to ten minutes while the database is away. Until then the claim stays
/// pending, and if this node dies first, another node pushes it again (at least once).
pub struct ClaimTicket {
    id: String,
    store: Arc<dyn crate::store::Store>,
    inflight: Inflight,
}

/// The claim ids this node's jobs hold (queued, pushing, or being marked done). An unfinished
/// claim of this node that is not in here was orphaned (its answer from the database was lost,
/// or its marking gave up) and is sent again by [`crate::cluster`].
pub type Inflight = Arc<std::sync::Mutex<std::collections::HashSet<String>>>;

impl ClaimTicket {
    pub fn new(
        id: String,
        store: Arc<dyn crate::store::Store>,
        inflight: &Inflight,
    ) -> ClaimTicket {
        inflight.lock().expect("inflight lock").insert(id.clone());
        ClaimTicket {
            id,
            store,
            inflight: inflight.clone(),
        }
    }
}

impl Drop for ClaimTicket {
    fn drop(&mut self) {
        let (id, store) = (std::mem::take(&mut self.id), self.store.clone());
        let inflight = self.inflight.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            inflight.lock().expect("inflight lock").remove(&id);
            return;
        };
        rt.spawn(async move {
            for attempt in 0..600 {
                let i = id.clone();
                let r = crate::store::index::blocking(&store, move |st| {
                    st.finish_claim(&i, now_ms())
                })
                .await;
                match r {
                    Ok(()) => break,
                    Err(e) if attempt == 0 => {
                        tracing::warn!(id = %id, error = %e, "notification not yet marked done; retrying")
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            inflight.lock().expect("inflight lock").remove(&id);
        });
    }
}
