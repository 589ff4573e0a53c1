//! Three nodes behind a balancer with a real Dovecot (issue 12): the node that owns a user's
//! permanent listener is killed with SIGKILL; another node takes the lease within the bound and
//! re-asserts METADATA, a new subscription through a surviving node works, pushes continue.

mod chain;
mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use common::cluster::{Balancer, Cluster, HEARTBEAT_MS, LEASE_MS};
use common::{Opts, REST_LOGIN, REST_PASSWORD};
use support::{Dovecot, DovecotOpts, Driver};

const APNS_TOKEN: &str = "aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44";
const FCM_TOKEN: &str = "fcm-token-after-the-kill";

async fn wait_metadata(dc: &Dovecot, want: &str, within: Duration, c: &Cluster) {
    chain::wait_metadata(dc, "alice", want, within, &|| c.logs()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_listener_owner_moves_its_lease_and_pushes_continue() {
    chain::ensure_plugin();
    let lb = Balancer::start().await;
    let driver = format!(
        "ox:url=http://{REST_LOGIN}:{REST_PASSWORD}@{}/preliminary/http-notify/v1/notify user_from_metadata",
        lb.addr
    );
    let dc = tokio::task::block_in_place(|| {
        Dovecot::start(DovecotOpts::new(Driver::OxPush, vec![driver]))
    });
    let opts = Opts {
        apns: true,
        fcm: true,
        extra_props: format!(
            "mock.imap.host=127.0.0.1\nmock.imap.port={}\nmock.imap.retry_delay_ms=300\ncom.openexchange.capability.mobile_mail_app=true\n",
            dc.imap_port
        ),
        users_yml: "users:\n  - login: alice\n    userId: 3\n    contextId: 1\n".into(),
        ..Opts::default()
    };
    let mut c = Cluster::start(3, opts).await;
    lb.route_to(&c.nodes);
    // IMAP login on node 1, subscribe on node 2: the lease owner (whichever node) sets METADATA
    // with the live credential it reads from the shared store.
    let l = c.session(0, "alice", "pw").await;
    c.subscribe(1, &l, APNS_TOKEN, "apn").await;
    wait_metadata(&dc, "user=3@1", Duration::from_secs(10), &c).await;
    tokio::task::block_in_place(|| dc.lmtp(&["alice"], &support::simple_message("Before")));
    assert_eq!(
        c.wait_fake("apns", 1, Duration::from_secs(5)).await.len(),
        1,
        "{}",
        c.logs()
    );

    let cluster = c.admin(0, "/mock/cluster").await;
    let owner = cluster["leases"][0]["node_id"]
        .as_str()
        .unwrap()
        .to_string();
    let dead = c.nodes.iter().position(|n| n.name == owner).unwrap();
    let alive: Vec<usize> = (0..3).filter(|i| *i != dead).collect();
    assert_eq!(
        c.admin(alive[0], "/mock/pushusers").await,
        serde_json::json!([{"context": 1, "user": 3, "permanent": true}])
    );
    // METADATA removed behind the cluster's back, then the owner dies: only a new owner's
    // re-assertion can bring it back.
    chain::unset_metadata(&dc, "alice");
    wait_metadata(&dc, "", Duration::from_secs(5), &c).await;
    let killed = Instant::now();
    c.nodes[dead].kill9();
    // Bound: the lease runs out (LEASE_MS after the last renewal), the next heartbeat of a
    // live node takes it, then one IMAP conversation.
    let bound = Duration::from_millis(LEASE_MS + 2 * HEARTBEAT_MS) + Duration::from_secs(3);
    wait_metadata(&dc, "user=3@1", bound, &c).await;
    let took = killed.elapsed();
    let after = c.admin(alive[0], "/mock/cluster").await;
    let new_owner = after["leases"][0]["node_id"].as_str().unwrap().to_string();
    assert_ne!(new_owner, owner, "{after}");
    assert!(
        c.logs()
            .contains(&format!("lease taken over from node {owner}")),
        "{}",
        c.logs()
    );
    eprintln!(
        "lease moved from {owner} to {new_owner} and METADATA re-asserted {took:?} after the kill"
    );
    assert_eq!(
        c.admin(alive[1], "/mock/pushusers").await,
        serde_json::json!([{"context": 1, "user": 3, "permanent": true}])
    );

    // A new device through a surviving node, then mail: both devices get it.
    let l2 = c.session(alive[1], "alice", "pw").await;
    c.subscribe(alive[0], &l2, FCM_TOKEN, "gcm").await;
    tokio::task::block_in_place(|| dc.lmtp(&["alice"], &support::simple_message("After the kill")));
    let apns = c.wait_fake("apns", 2, Duration::from_secs(10)).await;
    let fcm = c.wait_fake("fcm", 1, Duration::from_secs(10)).await;
    assert_eq!(apns.len(), 2, "{}", c.logs());
    assert_eq!(fcm.len(), 1, "{}", c.logs());
    assert!(
        fcm[0]["body"].to_string().contains(FCM_TOKEN),
        "{:?}",
        fcm[0]
    );
}
