//! `mock-middleware device`: a stand-in for the OX Mail app. Finds the server (a base URL or a
//! provider id from `/config/providers`), discovers the API path as the app does (probe
//! `<base>/appsuite/api/`, recognise Grizzly's "Not Found" page, else fall back to `/ajax`),
//! refuses untrusted TLS certificates, logs in as `open-xchange-mailapp`, subscribes a token and
//! prints each push the fake provider receives for it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

#[derive(clap::Args, Debug)]
pub struct DeviceArgs {
    /// Middleware base URL (e.g. http://127.0.0.1:8009), or with --provider the URL of the
    /// configuration service.
    #[arg(long)]
    pub url: String,
    /// Provider id to look up in `<url>/config/providers/<id>`.
    #[arg(long)]
    pub provider: Option<String>,
    #[arg(long)]
    pub user: String,
    #[arg(long, env = "DEVICE_PASSWORD", hide_env_values = true)]
    pub password: crate::config::Secret,
    /// `apn` (iPhone) or `gcm` (Android).
    #[arg(long, default_value = "apn")]
    pub transport: String,
    #[arg(long)]
    pub token: String,
    /// Name shown in front of every line.
    #[arg(long, default_value = "device")]
    pub name: String,
    /// Fake providers' admin listener, to show the pushes that arrived for the token.
    #[arg(long)]
    pub fake_admin: Option<String>,
    /// Extra trusted CA (PEM) besides the web roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Stop after this many pushes (0 = until killed).
    #[arg(long, default_value_t = 0)]
    pub pushes: usize,
    /// Give up waiting after this many seconds (0 = never).
    #[arg(long, default_value_t = 0)]
    pub timeout_s: u64,
}

fn http(ca: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| ca.display().to_string())?;
        for c in reqwest::Certificate::from_pem_bundle(&pem)? {
            b = b.add_root_certificate(c);
        }
    }
    Ok(b.build()?)
}

fn describe(url: &str, e: &reqwest::Error) -> anyhow::Error {
    let mut chain = format!("{e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        chain.push_str(&format!(": {s}"));
        src = s.source();
    }
    if chain.contains("certificate") || chain.contains("UnknownIssuer") {
        anyhow!("refusing {url}: its TLS certificate is not trusted ({chain})")
    } else {
        anyhow!("{url}: {chain}")
    }
}

/// The API base: `<base>/appsuite/api` when the probe shows an OX (Grizzly 404 page or a JSON
/// answer), else `<base>/ajax`.
pub async fn discover(c: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let base = base.trim_end_matches('/');
    let probe = format!("{base}/appsuite/api/");
    let r = c
        .get(&probe)
        .send()
        .await
        .map_err(|e| describe(&probe, &e))?;
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    let grizzly = status == 404 && text.contains("Grizzly") && text.contains("Not Found");
    if grizzly || status.is_success() {
        Ok(format!("{base}/appsuite/api"))
    } else {
        Ok(format!("{base}/ajax"))
    }
}

pub async fn run(a: DeviceArgs) -> anyhow::Result<()> {
    let c = http(a.ca_file.as_deref())?;
    let say = |m: String| println!("[{}] {m}", a.name);
    let base = match &a.provider {
        None => a.url.clone(),
        Some(id) => {
            let u = format!("{}/config/providers/{id}", a.url.trim_end_matches('/'));
            let r = c.get(&u).send().await.map_err(|e| describe(&u, &e))?;
            if !r.status().is_success() {
                bail!("provider {id:?} unknown at {u} ({})", r.status());
            }
            let p: Value = r.json().await?;
            say(format!(
                "provider {} → {}",
                p["name"].as_str().unwrap_or(id),
                p["serverUrl"]
            ));
            p["serverUrl"].as_str().unwrap_or_default().to_string()
        }
    };
    let api = discover(&c, &base).await?;
    let login = c
        .post(format!("{api}/login?action=login"))
        .form(&[
            ("name", a.user.as_str()),
            ("password", a.password.expose()),
            ("client", "open-xchange-mailapp"),
        ])
        .send()
        .await
        .map_err(|e| describe(&api, &e))?;
    // The secret cookie name is only in Set-Cookie: read it before the body.
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect::<Vec<_>>()
        .join("; ");
    let r: Value = login.json().await?;
    let Some(session) = r["session"].as_str() else {
        bail!(
            "login refused: {} {}",
            r["code"].as_str().unwrap_or(""),
            r["error"].as_str().unwrap_or("")
        );
    };
    say(format!(
        "logged in as {} (user {} in context {}) via {api}",
        a.user, r["user_id"], r["context_id"]
    ));
    let body = json!({"token": a.token, "transport": a.transport, "topics": ["ox:mail:new"]});
    let v: Value = c
        .put(format!("{api}/pns?action=subscribe&session={session}"))
        .header("cookie", cookie)
        .body(body.to_string())
        .send()
        .await?
        .json()
        .await?;
    if v["data"]["success"] != true {
        bail!(
            "subscribe refused: {} {}",
            v["code"].as_str().unwrap_or(""),
            v["error"].as_str().unwrap_or("")
        );
    }
    say(format!(
        "subscribed {} token {}…",
        a.transport,
        &a.token[..a.token.len().min(8)]
    ));
    let Some(fake) = &a.fake_admin else {
        return Ok(());
    };
    let provider = if a.transport == "gcm" { "fcm" } else { "apns" };
    let start = Instant::now();
    let mut seen = 0;
    loop {
        let list: Value = c
            .get(format!(
                "{}/fake/requests?provider={provider}",
                fake.trim_end_matches('/')
            ))
            .send()
            .await?
            .json()
            .await?;
        let mine: Vec<&Value> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["token"] == a.token.as_str() || r["body"].to_string().contains(&a.token))
            .collect();
        for r in &mine[seen.min(mine.len())..] {
            say(format!("push received: {}", summary(r)));
        }
        seen = mine.len();
        if a.pushes > 0 && seen >= a.pushes {
            return Ok(());
        }
        if a.timeout_s > 0 && start.elapsed() > Duration::from_secs(a.timeout_s) {
            bail!(
                "{seen} of {} pushes arrived within {} s",
                a.pushes,
                a.timeout_s
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn summary(r: &Value) -> String {
    let b: Value = match &r["body"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        v => v.clone(),
    };
    if let Some(alert) = b["aps"]["alert"].as_str() {
        let (from, subject) = alert.split_once('\n').unwrap_or((alert, ""));
        return format!(
            "from {from:?}, subject {subject:?}, badge {}",
            b["aps"]["badge"]
        );
    }
    let d = &b["message"]["data"];
    format!(
        "from {}, subject {}, unread {}",
        d["sender"], d["subject"], d["unread"]
    )
}
