//! Operator commands that talk to a running instance (admin listener) or, failing that, to its
//! database: `listpushusers` (OX 7.8.x format) and `pushusers -l` / `-r` (OX 7.10 texts).

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::Value;

use crate::config::Settings;
use std::sync::Arc;

use crate::config::DbTarget;
use crate::store::Store;

fn admin_base(s: &Settings) -> String {
    format!("http://{}", s.admin_listen)
}

/// The admin listener's JSON answer; a non-2xx status is an error naming the server's reason
/// (never read as "nothing there").
async fn admin_json(url: &str, r: reqwest::Response) -> anyhow::Result<Value> {
    let status = r.status();
    let v: Value = r
        .json()
        .await
        .with_context(|| format!("admin listener answer from {url} ({status})"))?;
    if !status.is_success() {
        return Err(anyhow!(
            "The running server at {url} failed: {status} {}",
            v["error"].as_str().unwrap_or("")
        ));
    }
    Ok(v)
}

/// A client for the admin listener, sending the bearer token from `mock.admin.token_file`
/// when it can be read (without it the server answers 401, reported with its reason).
fn client(s: &Settings) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(t) = std::fs::read_to_string(&s.admin_token_file) {
        if let Ok(v) = format!("Bearer {}", t.trim()).parse() {
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
    }
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .default_headers(headers)
        .build()
        .expect("plain HTTP client")
}

/// `listpushusers`: `user=249, context=1, permanent=true`, one per line, sorted.
pub async fn listpushusers(dir: &Path) -> anyhow::Result<Vec<String>> {
    let s = Settings::load(dir)?;
    let url = format!("{}/mock/pushusers", admin_base(&s));
    let v: Value = match client(&s).get(&url).send().await {
        Ok(r) => admin_json(&url, r).await?,
        Err(e) => {
            return Err(anyhow!(
                "No running mock-middleware at {url} ({e}); running listeners exist only in a running server."
            ))
        }
    };
    let mut rows: Vec<(i64, i64)> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            (
                x["context"].as_i64().unwrap_or(0),
                x["user"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    rows.sort();
    Ok(rows
        .into_iter()
        .map(|(c, u)| format!("user={u}, context={c}, permanent=true"))
        .collect())
}

/// Formats rows like OX's command-line tables.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.push(
        w.iter()
            .map(|n| "-".repeat(*n))
            .collect::<Vec<_>>()
            .join("-+-"),
    );
    for r in rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// `pushusers -l`: the registrations (`Context | User | Client`).
pub async fn pushusers_list(dir: &Path) -> anyhow::Result<Vec<String>> {
    let s = Settings::load(dir)?;
    let url = format!("{}/mock/registrations", admin_base(&s));
    let regs: Vec<(i64, i64, String)> = match client(&s).get(&url).send().await {
        Ok(r) => admin_json(&url, r)
            .await?
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| {
                (
                    x["context"].as_i64().unwrap_or(0),
                    x["user"].as_i64().unwrap_or(0),
                    x["client"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
        Err(e) => {
            let (s2, url2, why) = (s.clone(), url.clone(), e.to_string());
            off_executor(move || Ok(from_db(&s2, &url2, &why)?.registrations()?))
                .await?
                .into_iter()
                .map(|(c, u, cl)| (c as i64, u as i64, cl))
                .collect()
        }
    };
    if regs.is_empty() {
        return Ok(vec!["No registered push users.".into()]);
    }
    let rows: Vec<Vec<String>> = regs
        .into_iter()
        .map(|(c, u, cl)| vec![c.to_string(), u.to_string(), cl])
        .collect();
    Ok(table(&["Context", "User", "Client"], &rows))
}

/// Runs SQLite work on the blocking pool.
async fn off_executor<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

fn from_db(s: &Settings, url: &str, why: &str) -> anyhow::Result<Arc<dyn Store>> {
    let name = match &s.db {
        DbTarget::Sqlite(p) => {
            if !p.is_file() {
                return Err(anyhow!(
                    "Neither the running server ({url}: {why}) nor the database ({}: no such file) is reachable.",
                    p.display()
                ));
            }
            p.display().to_string()
        }
        DbTarget::Postgres(_) => "mock.db (PostgreSQL)".to_string(),
    };
    eprintln!("No running server at {url}; using the database {name}.");
    crate::store::open(&s.db, 1).map_err(|e| {
        anyhow!("Neither the running server ({url}: {why}) nor the database ({name}: {e}) is reachable.")
    })
}

/// `pushusers -r -c <cid> -u <uid> -i <client>` with OX's messages.
pub async fn pushusers_remove(
    dir: &Path,
    cid: i32,
    uid: i32,
    client_id: &str,
) -> anyhow::Result<String> {
    let s = Settings::load(dir)?;
    let url = format!("{}/mock/registrations", admin_base(&s));
    let deleted = match client(&s)
        .delete(&url)
        .query(&[
            ("context", cid.to_string()),
            ("user", uid.to_string()),
            ("client", client_id.to_string()),
        ])
        .send()
        .await
    {
        Ok(r) => admin_json(&url, r).await?["deleted"] == true,
        Err(e) => {
            let (s2, url2, why, cl) =
                (s.clone(), url.clone(), e.to_string(), client_id.to_string());
            off_executor(move || Ok(from_db(&s2, &url2, &why)?.remove_registration(cid, uid, &cl)?))
                .await?
        }
    };
    Ok(if deleted {
        format!("Push registration successfully deleted for user {uid} in context {cid} for client '{client_id}'")
    } else {
        format!(
            "No such push registration for user {uid} in context {cid} for client '{client_id}'"
        )
    })
}
