//! Every store test runs against both backends: a SQLite file and a private PostgreSQL
//! (`common::pg`). Each case is written once over `&dyn Store`; `both!` makes one test per
//! backend, named `<case>::sqlite` and `<case>::postgres`.

mod common;

use std::path::Path;
use std::sync::Arc;

use mock_middleware::config::UsersFile;
use mock_middleware::store::{
    NodeRow, SessionRow, Store, StoredCredential, SubKey, Subscription, Subscriptions,
};

fn sub(cid: i32, uid: i32, client: &str, token: &str, topics: &[&str]) -> Subscription {
    Subscription {
        context_id: cid,
        user_id: uid,
        client: client.into(),
        transport: "apn".into(),
        token: token.into(),
        topics: topics
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .into(),
        created: 1,
    }
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let open = || mock_middleware::store::open_sqlite(&dir.path().join("x.sqlite")).unwrap();
                super::$case(&open);
            }
            #[test]
            fn postgres() {
                let pg = crate::common::pg::Postgres::start();
                let url = pg.url("mm");
                let open = || -> std::sync::Arc<dyn mock_middleware::store::Store> {
                    std::sync::Arc::new(mock_middleware::store::pg::PgStore::open(&url, 4).unwrap())
                };
                super::$case(&open);
            }
        }
    )*};
}

both!(
    migrations_apply_once_and_reopen,
    subscriptions_put_remove_and_takeover,
    legacy_unsubscribe_removes_only_the_callers_token,
    update_token_refuses_a_token_of_another_user,
    index_follows_store_including_token_takeover,
    user_ids_are_stable_per_login_and_context_per_domain,
    registrations_credentials_and_meta_init,
    sessions_are_shared_and_pruned,
    a_notification_id_is_claimed_once,
    orphaned_claims_move_to_a_live_node,
    leases_have_one_owner_and_move_when_the_owner_dies,
    reconcile_requests_reach_the_owner_once,
    recordings_are_kept_in_order_and_trimmed,
);

type Open<'a> = &'a dyn Fn() -> Arc<dyn Store>;

fn migrations_apply_once_and_reopen(open: Open) {
    let v = open().schema_version().unwrap();
    assert!(v >= 1);
    let st = open();
    assert_eq!(
        st.schema_version().unwrap(),
        v,
        "a second open migrates nothing"
    );
    st.put(&sub(1, 3, "c", "aa", &["*"])).unwrap();
    drop(st);
    assert_eq!(open().count().unwrap(), 1, "data survives reopening");
}

fn subscriptions_put_remove_and_takeover(open: Open) {
    let st = open();
    assert_eq!(
        st.put(&sub(1, 3, "c", "aa", &["ox:mail:new"])).unwrap(),
        None
    );
    // The same device subscribed by another user moves to that user.
    let prev = st.put(&sub(1, 4, "c", "aa", &["*"])).unwrap().unwrap();
    assert_eq!((prev.context_id, prev.user_id), (1, 3));
    assert!(st.for_user(1, 3).unwrap().is_empty());
    let mine = st.for_user(1, 4).unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(&*mine[0].topics, ["*".to_string()]);
    let key = SubKey::from(&mine[0]);
    assert!(st.remove(&key).unwrap());
    assert!(!st.remove(&key).unwrap());
    st.put_many(&[sub(1, 5, "c", "b1", &["*"]), sub(1, 5, "d", "b2", &["*"])])
        .unwrap();
    let mut all = Vec::new();
    st.load_all(&mut |s| all.push(s.token)).unwrap();
    all.sort();
    assert_eq!(all, ["b1", "b2"]);
}

fn legacy_unsubscribe_removes_only_the_callers_token(open: Open) {
    let st = open();
    st.put(&sub(1, 1, "x", "aa", &["*"])).unwrap();
    st.put(&sub(1, 2, "y", "aa", &["*"])).unwrap();
    st.put(&sub(2, 2, "z", "aa", &["*"])).unwrap();
    assert_eq!(st.remove_token((1, 1), "apn", "aa").unwrap().len(), 1);
    assert_eq!(
        st.count().unwrap(),
        2,
        "only the caller's own subscription went"
    );
}

fn update_token_refuses_a_token_of_another_user(open: Open) {
    let st = open();
    st.put(&sub(1, 1, "x", "old", &["*"])).unwrap();
    st.put(&sub(1, 2, "x", "theirs", &["*"])).unwrap();
    assert!(st
        .replace_token("apn", "old", "theirs", Some((1, 1)))
        .is_err());
    assert_eq!(
        st.replace_token("apn", "old", "new", Some((1, 1)))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(st.for_user(1, 1).unwrap()[0].token, "new");
    // A provider's canonical id replaces the token wherever it is.
    assert_eq!(
        st.replace_token("apn", "theirs", "canon", None)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(st.for_user(1, 2).unwrap()[0].token, "canon");
}

fn index_follows_store_including_token_takeover(open: Open) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = open();
    rt.block_on(async {
        let subs = Subscriptions::open(store.clone()).unwrap();
        subs.put(sub(1, 2, "c", "ab", &["ox:mail:new"]))
            .await
            .unwrap();
        subs.put(sub(1, 9, "c", "ab", &["*"])).await.unwrap();
        assert!(
            subs.for_user(1, 2).await.unwrap().is_empty(),
            "token moved to user 9"
        );
        assert_eq!(subs.for_user(1, 9).await.unwrap().len(), 1);
        subs.replace_token("apn".into(), "ab".into(), "cd".into(), None)
            .await
            .unwrap();
        assert_eq!(subs.for_user(1, 9).await.unwrap()[0].token, "cd");
        let reopened = Subscriptions::open(store.clone()).unwrap();
        assert_eq!(reopened.for_user(1, 9).await.unwrap()[0].token, "cd");
        assert_eq!(reopened.count().await.unwrap(), 1);
    });
}

fn user_ids_are_stable_per_login_and_context_per_domain(open: Open) {
    let fixed = UsersFile::parse(
        "users:\n  - login: demo\n    userId: 7\n    contextId: 1\n",
        Path::new("users.yml"),
    )
    .unwrap();
    let st = open();
    assert_eq!(st.user_ids("demo", &fixed).unwrap(), (7, 1));
    let a = st.user_ids("alice@a.example", &fixed).unwrap();
    let b = st.user_ids("bob@a.example", &fixed).unwrap();
    let c = st.user_ids("carol@c.example", &fixed).unwrap();
    assert_eq!((a, b, c), ((3, 2), (4, 2), (3, 3)));
    drop(st);
    let st = open();
    assert_eq!(st.user_ids("bob@a.example", &fixed).unwrap(), b);
    assert_eq!(
        st.login_of(2, 3).unwrap().as_deref(),
        Some("alice@a.example")
    );
}

fn registrations_credentials_and_meta_init(open: Open) {
    let st = open();
    assert!(st.add_registration(1, 3, "m").unwrap());
    assert!(!st.add_registration(1, 3, "m").unwrap());
    assert_eq!(st.registrations().unwrap(), [(1, 3, "m".to_string())]);
    assert!(st.remove_registration(1, 3, "m").unwrap());
    let cred = StoredCredential {
        login: "alice".into(),
        password_enc: "enc".into(),
    };
    st.put_credential(1, 3, &cred).unwrap();
    assert_eq!(st.credential(1, 3).unwrap(), Some(cred.clone()));
    st.delete_credential(1, 3).unwrap();
    assert_eq!(st.credential(1, 3).unwrap(), None);
    st.put_live_credential(1, 3, &cred, 2_000).unwrap();
    assert_eq!(st.live_credential(1, 3, 1_000).unwrap(), Some(cred.clone()));
    assert_eq!(st.live_credential(1, 3, 3_000).unwrap(), None, "expired");
    assert_eq!(st.meta_init("k", "first").unwrap(), "first");
    assert_eq!(
        st.meta_init("k", "second").unwrap(),
        "first",
        "the first value stays"
    );
    assert_eq!(st.meta("k").unwrap().as_deref(), Some("first"));
}

fn sessions_are_shared_and_pruned(open: Open) {
    let st = open();
    let row = SessionRow {
        id: "s1".into(),
        secret_sha256: "h".into(),
        hash: "c".into(),
        login: "alice".into(),
        user_id: 3,
        context_id: 1,
        client: "open-xchange-mailapp".into(),
        client_given: true,
        created_ms: 1_000,
        last_used_ms: 1_000,
    };
    st.put_session(&row).unwrap();
    assert_eq!(
        open().session("s1").unwrap(),
        Some(row.clone()),
        "another connection sees it"
    );
    st.touch_session("s1", 5_000).unwrap();
    assert_eq!(st.prune_sessions(4_000, 0).unwrap(), 0, "used recently");
    assert_eq!(st.prune_sessions(6_000, 0).unwrap(), 1, "idle");
    assert!(!st.remove_session("s1").unwrap());
}

fn a_notification_id_is_claimed_once(open: Open) {
    let (a, b) = (open(), open());
    assert!(a.claim("n1", "node-a", "{}", 1_000).unwrap());
    assert!(
        !b.claim("n1", "node-b", "{}", 1_001).unwrap(),
        "a repeat on another node"
    );
    // A claim that could not be queued is withdrawn, and the retry is claimed again.
    b.release_claim("n1", "node-b").unwrap();
    assert!(
        !b.claim("n1", "node-b", "{}", 1_002).unwrap(),
        "only the owner releases"
    );
    a.release_claim("n1", "node-a").unwrap();
    assert!(b.claim("n1", "node-b", "{}", 1_003).unwrap());
    b.finish_claim("n1", 2_000).unwrap();
    assert!(
        !a.claim("n1", "node-a", "{}", 2_001).unwrap(),
        "done: still a repeat"
    );
    assert_eq!(a.purge_claims(1_500).unwrap(), 0);
    assert_eq!(
        a.purge_claims(2_500).unwrap(),
        1,
        "remembered until dedup_keep"
    );
    assert!(a.claim("n1", "node-a", "{}", 3_000).unwrap());
}

fn node(id: &str, heartbeat_ms: i64) -> NodeRow {
    NodeRow {
        node_id: id.into(),
        http_addr: "127.0.0.1:1".into(),
        admin_addr: "127.0.0.1:2".into(),
        started_ms: 0,
        heartbeat_ms,
    }
}

fn orphaned_claims_move_to_a_live_node(open: Open) {
    let st = open();
    st.heartbeat(&node("dead", 1_000)).unwrap();
    st.heartbeat(&node("live", 9_000)).unwrap();
    st.claim("x", "dead", "{\"e\":1}", 900).unwrap();
    st.claim("y", "live", "{}", 900).unwrap();
    st.claim("z", "dead", "{}", 900).unwrap();
    st.finish_claim("z", 950).unwrap();
    // Dead = no heartbeat since 5_000: only the dead node's unfinished claim moves.
    let got = st.take_orphan_claims("live", 5_000, 0, 9_000).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].id.as_str(), got[0].event.as_str()),
        ("x", "{\"e\":1}")
    );
    assert!(
        st.take_orphan_claims("live", 5_000, 0, 9_001)
            .unwrap()
            .is_empty(),
        "taken once"
    );
    // A node's own claims of an earlier run (claimed before it started) come back to it.
    let again = st
        .take_orphan_claims("live", 5_000, 10_000, 10_000)
        .unwrap();
    let mut ids: Vec<_> = again.iter().map(|c| c.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["x", "y"]);
    // A claim committed while its node heard only an error: found as the node's own old
    // unfinished claim, confirmed once, not after it is done.
    st.claim("w", "live", "{\"w\":1}", 11_000).unwrap();
    assert_eq!(
        st.own_pending_claims("live", 11_000).unwrap().len(),
        2,
        "x and y, not w yet"
    );
    assert!(st
        .own_pending_claims("live", 12_000)
        .unwrap()
        .contains(&"w".to_string()));
    assert_eq!(
        st.retake_claim("w", "live", 12_000).unwrap().as_deref(),
        Some("{\"w\":1}")
    );
    assert_eq!(
        st.retake_claim("w", "other", 12_000).unwrap(),
        None,
        "only its own"
    );
    st.finish_claim("w", 12_500).unwrap();
    assert_eq!(
        st.retake_claim("w", "live", 13_000).unwrap(),
        None,
        "done is done"
    );
}

fn leases_have_one_owner_and_move_when_the_owner_dies(open: Open) {
    let (a, b) = (open(), open());
    a.heartbeat(&node("A", 1_000)).unwrap();
    b.heartbeat(&node("B", 1_000)).unwrap();
    a.add_registration(1, 3, "m").unwrap();
    a.add_registration(1, 4, "m").unwrap();
    assert_eq!(a.lease_owner(1, 3, "A", 0).unwrap(), "A");
    assert_eq!(
        b.lease_owner(1, 3, "B", 0).unwrap(),
        "A",
        "one owner while A heartbeats"
    );
    let got = b.acquire_unleased("B").unwrap();
    assert_eq!(got, [(1, 4, None)], "B takes the unleased user only");
    assert!(a.acquire_unleased("A").unwrap().is_empty());
    a.set_asserted(1, 3, "A", true).unwrap();
    // A stops heartbeating; B finds it dead and takes its users.
    b.heartbeat(&node("B", 9_000)).unwrap();
    assert_eq!(b.dead_nodes("B", 5_000).unwrap(), ["A"]);
    assert!(b.dead_nodes("A", 5_000).unwrap().is_empty(), "B is alive");
    assert_eq!(b.take_leases_of("A", "B").unwrap(), [(1, 3)]);
    assert!(a.take_leases_of("A", "C").unwrap().is_empty(), "taken once");
    b.forget_node("A", 5_000).unwrap();
    assert_eq!(b.nodes().unwrap().len(), 1);
    let l = b.leases().unwrap();
    assert!(l.iter().all(|l| l.node_id == "B" && !l.asserted), "{l:?}");
    // A lease whose owner is dead moves on the spot when a subscribe asks for it.
    a.heartbeat(&node("A", 9_500)).unwrap();
    b.heartbeat(&node("B", 2_000)).unwrap();
    assert_eq!(a.lease_owner(1, 3, "A", 5_000).unwrap(), "A");
    // The last registration gone: the owner releases the lease; others cannot.
    b.remove_registration(1, 4, "m").unwrap();
    a.release_lease(1, 4, "A").unwrap();
    assert_eq!(b.leases().unwrap().len(), 2);
    b.release_lease(1, 4, "B").unwrap();
    assert_eq!(b.leases().unwrap().len(), 1);
    a.leave("A").unwrap();
    assert!(
        b.leases().unwrap().is_empty(),
        "a leaving node frees its leases"
    );
    // A lease of a node without a heartbeat row is taken by the next scan.
    b.lease_owner(1, 3, "ghost", 0).unwrap();
    assert_eq!(
        b.acquire_unleased("B").unwrap(),
        [(1, 3, Some("(gone)".to_string()))]
    );
}

fn reconcile_requests_reach_the_owner_once(open: Open) {
    let (a, b) = (open(), open());
    a.request_reconcile("B", 1, 3, "subscribe").unwrap();
    assert!(a.take_reconcile_requests("A").unwrap().is_empty());
    assert_eq!(
        b.take_reconcile_requests("B").unwrap(),
        [(1, 3, "subscribe".to_string())]
    );
    assert!(b.take_reconcile_requests("B").unwrap().is_empty());
}

/// `mock-middleware migrate` applies the schema of the configured store and names its version.
#[test]
fn migrate_command_reports_the_schema_version_of_both_backends() {
    let pg = common::pg::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    for (db, want) in [
        ("x.sqlite".to_string(), "sqlite "),
        (pg.url("mm"), "postgres 127.0.0.1:"),
    ] {
        std::fs::write(
            dir.path().join("mock.properties"),
            format!("mock.db={db}\n"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mock-middleware"))
            .args(["migrate", "--config-dir", dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.starts_with(want) && text.contains(": schema version "),
            "{text}"
        );
    }
    let steps = pg.psql("mm", "SELECT count(*) FROM mm_schema");
    let known = mock_middleware::store::schema::POSTGRES.len();
    assert_eq!(steps.trim(), known.to_string(), "each step applied once");
}

fn recordings_are_kept_in_order_and_trimmed(open: Open) {
    let (a, b) = (open(), open());
    let rows = |n: usize, from: i64| -> Vec<(i32, i64, String)> {
        (0..n as i64)
            .map(|i| (0, from + i, format!("{{\"i\":{}}}", from + i)))
            .collect()
    };
    a.append_recordings("n1", &rows(250, 0)).unwrap();
    b.append_recordings("n2", &rows(3, 1000)).unwrap();
    a.append_recordings("n1", &[(1, 5, "{}".into())]).unwrap();
    let all = b.recordings(0).unwrap();
    assert_eq!(all.len(), 253, "every row of a multi-chunk batch");
    assert_eq!(
        (all[0].1.as_str(), all[252].0.as_str()),
        ("{\"i\":0}", "n2")
    );
    assert_eq!(
        a.trim_recordings(0, 100, i64::MAX).unwrap(),
        153,
        "count bound"
    );
    let kept = a.recordings(0).unwrap();
    assert_eq!(
        kept.first().unwrap().1,
        "{\"i\":153}",
        "the newest are kept"
    );
    a.trim_recordings(0, 100, 20).unwrap();
    assert_eq!(
        a.recordings(0).unwrap().len(),
        2,
        "byte bound (each body is 10 bytes)"
    );
    assert_eq!(a.recordings(1).unwrap().len(), 1, "kinds apart");
    a.clear_recordings().unwrap();
    assert!(b.recordings(1).unwrap().is_empty());
}
