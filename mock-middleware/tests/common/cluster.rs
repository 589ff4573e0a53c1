//! Several mock-middleware nodes as processes (`serve`) over one private PostgreSQL, sharing
//! one configuration (the harness's directory: keys, secrets, `admin.token`, `cluster.key`);
//! each node has a directory of links to those files plus its own ports and node id. The fakes
//! run in the test process. Every process is killed in `Drop`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::pg::Postgres;
use super::{Harness, Login, Opts, REST_LOGIN, REST_PASSWORD};

/// Lease and heartbeat of the test clusters: a dead node's users move within 3.5 s.
pub const LEASE_MS: u64 = 3000;
pub const HEARTBEAT_MS: u64 = 500;

pub struct Node {
    pub name: String,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }
    /// `kill -9`: no goodbye, no lease released.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    pub fn alive(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Cluster {
    pub pg: Postgres,
    pub h: Harness,
    pub nodes: Vec<Node>,
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl Cluster {
    /// PostgreSQL, the fakes and `n` nodes; `opts.extra_props` go to every node.
    pub async fn start(n: usize, mut opts: Opts) -> Cluster {
        let pg = tokio::task::block_in_place(Postgres::start);
        opts.extra_props += &format!(
            "mock.db={}\nmock.cluster.lease_ms={LEASE_MS}\nmock.cluster.heartbeat_ms={HEARTBEAT_MS}\n",
            pg.url("mm")
        );
        let h = Harness::prepare(opts).await;
        let key = h.dir.path().join("cluster.key");
        std::fs::write(&key, hex::encode(rand::random::<[u8; 32]>())).unwrap();
        let mut c = Cluster {
            pg,
            h,
            nodes: Vec::new(),
        };
        for i in 1..=n {
            c.add_node(&format!("node{i}"));
        }
        for i in 0..n {
            c.wait_up(i).await;
        }
        c
    }

    fn add_node(&mut self, name: &str) {
        let shared = self.h.dir.path();
        let dir = shared.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(shared).unwrap().flatten() {
            let f = e.file_name();
            if e.path().is_file() && f != "mock.properties" {
                std::os::unix::fs::symlink(e.path(), dir.join(&f)).unwrap();
            }
        }
        let (http, admin) = (free_addr(), free_addr());
        let mut props = std::fs::read_to_string(shared.join("mock.properties")).unwrap();
        props += &format!(
            "mock.http.listen={http}\nmock.admin.listen={admin}\nmock.cluster.node_id={name}\n"
        );
        std::fs::write(dir.join("mock.properties"), props).unwrap();
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mock-middleware"))
            .args(["serve", "--config-dir", dir.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes.push(Node {
            name: name.into(),
            http,
            admin,
            dir,
            child: Some(child),
        });
    }

    async fn wait_up(&self, i: usize) {
        let end = Instant::now() + Duration::from_secs(60);
        let url = self.nodes[i].admin_url("/metrics");
        while self.h.http.get(&url).send().await.is_err() {
            assert!(
                Instant::now() < end,
                "node {i} did not start:\n{}",
                self.nodes[i].log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Logs in on node `i`.
    pub async fn session(&self, i: usize, name: &str, password: &str) -> Login {
        let form = [
            ("name", name),
            ("password", password),
            ("client", "open-xchange-mailapp"),
        ];
        let url = self.nodes[i].url("/appsuite/api/login?action=login");
        super::login_at(&self.h.http, &url, &form).await
    }

    /// Subscribes a device through node `i` with the session `l` (made on any node).
    pub async fn subscribe(&self, i: usize, l: &Login, token: &str, transport: &str) {
        let v: Value = self
            .h
            .http
            .put(self.nodes[i].url(&format!("/ajax/pns?action=subscribe&session={}", l.session)))
            .header("cookie", &l.cookie)
            .body(
                json!({"token": token, "transport": transport, "topics": ["ox:mail:new"]})
                    .to_string(),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            v,
            json!({"data": {"success": true}}),
            "subscribe on node {i}"
        );
    }

    /// PUTs a notification to node `i`, with `X-Notification-Id` when given: (status, result of
    /// the node's recording is not needed: the JSON body).
    pub async fn notify(&self, i: usize, body: &str, id: Option<&str>) -> (u16, Value) {
        let mut r = self
            .h
            .http
            .put(self.nodes[i].url("/preliminary/http-notify/v1/notify"))
            .basic_auth(REST_LOGIN, Some(REST_PASSWORD))
            .timeout(Duration::from_secs(15))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(id) = id {
            r = r.header("X-Notification-Id", id);
        }
        match r.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                (status, resp.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, json!({"transport": e.to_string()})),
        }
    }

    /// An admin JSON document of node `i` (bearer token sent).
    pub async fn admin(&self, i: usize, path: &str) -> Value {
        self.h.get_json(self.nodes[i].admin_url(path)).await
    }

    /// The fake provider's requests.
    pub async fn fake(&self, provider: &str) -> Vec<Value> {
        self.h.fake_requests(provider).await
    }

    /// Waits until the fake `provider` holds `n` requests or `timeout` passes.
    pub async fn wait_fake(&self, provider: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let end = Instant::now() + timeout;
        loop {
            let v = self.fake(provider).await;
            if v.len() >= n || Instant::now() > end {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {}:\n{}", n.name, n.log()))
            .collect()
    }
}

/// A TCP balancer on loopback in front of the nodes, as an operator would put one: each new
/// connection goes to the next backend that accepts it (a dead node is skipped). Runs on the
/// test's runtime, so it stops with the test.
pub struct Balancer {
    pub addr: SocketAddr,
    backends: std::sync::Arc<std::sync::Mutex<Vec<SocketAddr>>>,
}

impl Balancer {
    pub async fn start() -> Balancer {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let backends: std::sync::Arc<std::sync::Mutex<Vec<SocketAddr>>> = Default::default();
        let b2 = backends.clone();
        tokio::spawn(async move {
            let mut next = 0usize;
            while let Ok((mut inbound, _)) = l.accept().await {
                let list = b2.lock().unwrap().clone();
                next += 1;
                let start = next;
                tokio::spawn(async move {
                    for k in 0..list.len() {
                        let to = list[(start + k) % list.len()];
                        let conn = tokio::time::timeout(
                            Duration::from_millis(500),
                            tokio::net::TcpStream::connect(to),
                        )
                        .await;
                        if let Ok(Ok(mut out)) = conn {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { addr, backends }
    }

    /// Sends new connections to the public listeners of these nodes.
    pub fn route_to(&self, nodes: &[Node]) {
        *self.backends.lock().unwrap() = nodes.iter().map(|n| n.http).collect();
    }
}

/// Wall-clock milliseconds, as the nodes write them.
pub fn now_ms() -> i64 {
    mock_middleware::store::now_ms()
}
