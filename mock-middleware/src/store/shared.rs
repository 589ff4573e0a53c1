//! The cluster tables in the same portable SQL as [`super::sql`]: sessions, live credentials,
//! notification claims (the outbox), node heartbeats, listener leases and reconcile requests.
//!
//! Races between nodes are settled by single statements: a claim is an `INSERT … ON CONFLICT
//! DO NOTHING` (the primary key decides who pushes), a lease moves only by an `UPDATE … WHERE
//! node_id = <the dead owner>` (re-checked under the row lock, so two nodes cannot both take
//! it), and orphaned claims move by one `UPDATE` that re-checks the owner's liveness. A lease
//! is valid while its owner heartbeats: renewal costs one row per node, not one per user.

use super::schema::{DONE, PENDING};
use super::sql::{p, Backend, SqlStore};
use super::{LeaseRow, NodeRow, PendingClaim, SessionRow, Shared, StoreError, StoredCredential};

const SESSION_COLS: &str = "id, secret_sha256, hash, login, user_id, context_id, client, client_given, created_ms, last_used_ms";

impl<B: Backend> Shared for SqlStore<B> {
    fn put_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        self.b.auto(|c| {
            c.exec(
                &format!(
                    "INSERT INTO sessions ({SESSION_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"
                ),
                p![
                    &s.id,
                    &s.secret_sha256,
                    &s.hash,
                    &s.login,
                    s.user_id,
                    s.context_id,
                    &s.client,
                    s.client_given,
                    s.created_ms,
                    s.last_used_ms
                ],
            )
            .map(|_| ())
        })
    }

    fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        self.b.auto(|c| {
            let rows = c.query(
                &format!("SELECT {SESSION_COLS} FROM sessions WHERE id=$1"),
                p![id],
            )?;
            Ok(rows.first().map(|r| SessionRow {
                id: r[0].text(),
                secret_sha256: r[1].text(),
                hash: r[2].text(),
                login: r[3].text(),
                user_id: r[4].i32(),
                context_id: r[5].i32(),
                client: r[6].text(),
                client_given: r[7].i32() != 0,
                created_ms: r[8].i64(),
                last_used_ms: r[9].i64(),
            }))
        })
    }

    fn touch_session(&self, id: &str, last_used_ms: i64) -> Result<(), StoreError> {
        self.b.auto(|c| {
            c.exec(
                "UPDATE sessions SET last_used_ms=$1 WHERE id=$2",
                p![last_used_ms, id],
            )
            .map(|_| ())
        })
    }

    fn remove_session(&self, id: &str) -> Result<bool, StoreError> {
        self.b.auto(|c| {
            c.exec("DELETE FROM sessions WHERE id=$1", p![id])
                .map(|n| n > 0)
        })
    }

    fn prune_sessions(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError> {
        self.b.auto(|c| {
            c.exec(
                "DELETE FROM sessions WHERE last_used_ms < $1 OR created_ms < $2",
                p![idle_before, created_before],
            )
        })
    }

    fn put_live_credential(
        &self,
        cid: i32,
        uid: i32,
        cred: &StoredCredential,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        self.put_cred("live_credentials", cid, uid, cred, Some(expires_ms))
    }

    fn live_credential(
        &self,
        cid: i32,
        uid: i32,
        now_ms: i64,
    ) -> Result<Option<StoredCredential>, StoreError> {
        self.get_cred("live_credentials", cid, uid, Some(now_ms))
    }

    fn delete_live_credential(&self, cid: i32, uid: i32) -> Result<(), StoreError> {
        self.delete_cred("live_credentials", cid, uid)
    }

    fn claim(&self, id: &str, node: &str, event: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.b.auto(|c| {
            c.exec(
                "INSERT INTO notification_claims (id, node_id, state, event, claimed_ms)
                 VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING",
                p![id, node, PENDING, event, now_ms],
            )
            .map(|n| n > 0)
        })
    }

    fn release_claim(&self, id: &str, node: &str) -> Result<(), StoreError> {
        self.b.auto(|c| {
            c.exec(
                "DELETE FROM notification_claims WHERE id=$1 AND node_id=$2 AND state=$3",
                p![id, node, PENDING],
            )
            .map(|_| ())
        })
    }

    fn finish_claim(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.b.auto(|c| {
            c.exec(
                "UPDATE notification_claims SET state=$1, done_ms=$2, event='' WHERE id=$3",
                p![DONE, now_ms, id],
            )
            .map(|_| ())
        })
    }

    fn take_orphan_claims(
        &self,
        node: &str,
        dead_before: i64,
        started_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<PendingClaim>, StoreError> {
        self.b.auto(|c| {
            Ok(c.query(
                "UPDATE notification_claims SET node_id=$1, claimed_ms=$2
                 WHERE state=$3 AND (node_id NOT IN (SELECT node_id FROM nodes WHERE heartbeat_ms >= $4)
                                     OR (node_id=$1 AND claimed_ms < $5))
                 RETURNING id, event",
                p![node, now_ms, PENDING, dead_before, started_ms],
            )?
            .iter()
            .map(|r| PendingClaim {
                id: r[0].text(),
                event: r[1].text(),
            })
            .collect())
        })
    }

    fn own_pending_claims(&self, node: &str, before: i64) -> Result<Vec<String>, StoreError> {
        self.b.auto(|c| {
            Ok(c.query(
                "SELECT id FROM notification_claims WHERE state=$1 AND node_id=$2 AND claimed_ms < $3",
                p![PENDING, node, before],
            )?
            .iter()
            .map(|r| r[0].text())
            .collect())
        })
    }

    fn retake_claim(
        &self,
        id: &str,
        node: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        self.b.auto(|c| {
            Ok(c.query(
                "UPDATE notification_claims SET claimed_ms=$1 WHERE id=$2 AND node_id=$3 AND state=$4 RETURNING event",
                p![now_ms, id, node, PENDING],
            )?
            .first()
            .map(|r| r[0].text()))
        })
    }

    fn purge_claims(&self, before: i64) -> Result<u64, StoreError> {
        self.b.auto(|c| {
            c.exec(
                "DELETE FROM notification_claims WHERE state=$1 AND done_ms < $2",
                p![DONE, before],
            )
        })
    }

    fn append_recordings(&self, node: &str, rows: &[(i32, i64, String)]) -> Result<(), StoreError> {
        self.append_recs(node, rows)
    }

    fn recordings(&self, kind: i32) -> Result<Vec<(String, String)>, StoreError> {
        self.recs(kind)
    }

    fn trim_recordings(&self, kind: i32, max: i64, max_bytes: i64) -> Result<u64, StoreError> {
        self.trim_recs(kind, max, max_bytes)
    }

    fn clear_recordings(&self) -> Result<(), StoreError> {
        self.clear_recs()
    }

    fn heartbeat(&self, n: &NodeRow) -> Result<(), StoreError> {
        self.b.auto(|c| {
            c.exec(
                "INSERT INTO nodes (node_id, http_addr, admin_addr, started_ms, heartbeat_ms) VALUES ($1,$2,$3,$4,$5)
                 ON CONFLICT (node_id) DO UPDATE SET http_addr=excluded.http_addr, admin_addr=excluded.admin_addr,
                 started_ms=excluded.started_ms, heartbeat_ms=excluded.heartbeat_ms",
                p![&n.node_id, &n.http_addr, &n.admin_addr, n.started_ms, n.heartbeat_ms],
            )
            .map(|_| ())
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        self.b.auto(|c| {
            Ok(c.query(
                "SELECT node_id, http_addr, admin_addr, started_ms, heartbeat_ms FROM nodes ORDER BY node_id",
                &[],
            )?
            .iter()
            .map(|r| NodeRow {
                node_id: r[0].text(),
                http_addr: r[1].text(),
                admin_addr: r[2].text(),
                started_ms: r[3].i64(),
                heartbeat_ms: r[4].i64(),
            })
            .collect())
        })
    }

    fn leave(&self, node: &str) -> Result<(), StoreError> {
        self.b.tx(|c| {
            c.exec("DELETE FROM leases WHERE node_id=$1", p![node])?;
            c.exec("DELETE FROM reconcile_requests WHERE node_id=$1", p![node])?;
            c.exec("DELETE FROM nodes WHERE node_id=$1", p![node])
                .map(|_| ())
        })
    }

    fn dead_nodes(&self, node: &str, dead_before: i64) -> Result<Vec<String>, StoreError> {
        self.b.auto(|c| {
            Ok(c.query(
                "SELECT node_id FROM nodes WHERE node_id <> $1 AND heartbeat_ms < $2",
                p![node, dead_before],
            )?
            .iter()
            .map(|r| r[0].text())
            .collect())
        })
    }

    fn take_leases_of(&self, dead: &str, node: &str) -> Result<Vec<(i32, i32)>, StoreError> {
        self.b.auto(|c| {
            Ok(c.query(
                "UPDATE leases SET node_id=$1, asserted=0 WHERE node_id=$2 RETURNING context_id, user_id",
                p![node, dead],
            )?
            .iter()
            .map(|r| (r[0].i32(), r[1].i32()))
            .collect())
        })
    }

    fn forget_node(&self, dead: &str, dead_before: i64) -> Result<(), StoreError> {
        self.b.tx(|c| {
            let gone = c.exec(
                "DELETE FROM nodes WHERE node_id=$1 AND heartbeat_ms < $2",
                p![dead, dead_before],
            )?;
            if gone > 0 {
                c.exec("DELETE FROM reconcile_requests WHERE node_id=$1", p![dead])?;
            }
            Ok(())
        })
    }

    fn acquire_unleased(&self, node: &str) -> Result<Vec<(i32, i32, Option<String>)>, StoreError> {
        self.b.tx(|c| {
            let mut taken: Vec<(i32, i32, Option<String>)> = c
                .query(
                    "UPDATE leases SET node_id=$1, asserted=0
                     WHERE node_id NOT IN (SELECT node_id FROM nodes) RETURNING context_id, user_id",
                    p![node],
                )?
                .iter()
                .map(|r| (r[0].i32(), r[1].i32(), Some("(gone)".to_string())))
                .collect();
            let fresh = c.query(
                "INSERT INTO leases (context_id, user_id, node_id, asserted)
                 SELECT DISTINCT r.context_id, r.user_id, $1, 0 FROM registered_push r
                 WHERE NOT EXISTS (SELECT 1 FROM leases l WHERE l.context_id = r.context_id AND l.user_id = r.user_id)
                 ON CONFLICT DO NOTHING RETURNING context_id, user_id",
                p![node],
            )?;
            taken.extend(fresh.iter().map(|r| (r[0].i32(), r[1].i32(), None)));
            Ok(taken)
        })
    }

    fn lease_owner(
        &self,
        cid: i32,
        uid: i32,
        node: &str,
        dead_before: i64,
    ) -> Result<String, StoreError> {
        self.b.tx(|c| {
            let owner = c
                .query(
                    "SELECT l.node_id, COALESCE(n.heartbeat_ms, 0) FROM leases l
                     LEFT JOIN nodes n ON n.node_id = l.node_id WHERE l.context_id=$1 AND l.user_id=$2",
                    p![cid, uid],
                )?
                .first()
                .map(|r| (r[0].text(), r[1].i64()));
            match owner {
                None => {
                    c.exec(
                        "INSERT INTO leases (context_id, user_id, node_id, asserted) VALUES ($1,$2,$3,0)
                         ON CONFLICT DO NOTHING",
                        p![cid, uid, node],
                    )?;
                }
                // Compare-and-set: only the dead owner's lease moves.
                Some((o, beat)) if o != node && beat < dead_before => {
                    c.exec(
                        "UPDATE leases SET node_id=$1, asserted=0 WHERE context_id=$2 AND user_id=$3 AND node_id=$4",
                        p![node, cid, uid, &o],
                    )?;
                }
                Some(_) => {}
            }
            Ok(c.query(
                "SELECT node_id FROM leases WHERE context_id=$1 AND user_id=$2",
                p![cid, uid],
            )?[0][0]
                .text())
        })
    }

    fn release_lease(&self, cid: i32, uid: i32, node: &str) -> Result<(), StoreError> {
        self.b.auto(|c| {
            c.exec(
                "DELETE FROM leases WHERE context_id=$1 AND user_id=$2 AND node_id=$3 AND NOT EXISTS
                 (SELECT 1 FROM registered_push r WHERE r.context_id=$1 AND r.user_id=$2)",
                p![cid, uid, node],
            )
            .map(|_| ())
        })
    }

    fn leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
        self.b.auto(|c| {
            Ok(c.query(
                "SELECT context_id, user_id, node_id, asserted FROM leases ORDER BY 1, 2",
                &[],
            )?
            .iter()
            .map(|r| LeaseRow {
                context_id: r[0].i32(),
                user_id: r[1].i32(),
                node_id: r[2].text(),
                asserted: r[3].i32() != 0,
            })
            .collect())
        })
    }

    fn set_asserted(
        &self,
        cid: i32,
        uid: i32,
        node: &str,
        asserted: bool,
    ) -> Result<(), StoreError> {
        self.b.auto(|c| {
            c.exec(
                "UPDATE leases SET asserted=$1 WHERE context_id=$2 AND user_id=$3 AND node_id=$4",
                p![asserted, cid, uid, node],
            )
            .map(|_| ())
        })
    }

    fn request_reconcile(
        &self,
        owner: &str,
        cid: i32,
        uid: i32,
        why: &str,
    ) -> Result<(), StoreError> {
        self.b.auto(|c| {
            c.exec(
                "INSERT INTO reconcile_requests (node_id, context_id, user_id, why) VALUES ($1,$2,$3,$4)",
                p![owner, cid, uid, why],
            )
            .map(|_| ())
        })
    }

    fn take_reconcile_requests(&self, node: &str) -> Result<Vec<(i32, i32, String)>, StoreError> {
        self.b.auto(|c| {
            Ok(c.query(
                "DELETE FROM reconcile_requests WHERE node_id=$1 RETURNING context_id, user_id, why",
                p![node],
            )?
            .iter()
            .map(|r| (r[0].i32(), r[1].i32(), r[2].text()))
            .collect())
        })
    }
}
