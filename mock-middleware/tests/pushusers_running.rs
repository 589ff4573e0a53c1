//! `listpushusers` / `pushusers` as separate processes against a RUNNING server (its admin
//! listener), with a real Dovecot: `-r` deletes the registration and the METADATA goes to NIL.
//! Plus the message when neither the server nor the database is reachable.

mod chain;
mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::{Command, Output};

const APNS_TOKEN: &str = "aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44";
const CLIENT: &str = "open-xchange-mailapp";

/// Runs the binary with a bound on its run time (the CLI's HTTP client has a 5 s timeout).
fn run(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_mock-middleware"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn mock-middleware");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output().expect("wait");
        let _ = tx.send(());
        out
    });
    if rx.recv_timeout(std::time::Duration::from_secs(30)).is_err() {
        // SAFETY: signalling the child we spawned above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("{args:?} did not finish within 30 s");
    }
    waiter.join().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let o = tokio::task::block_in_place(|| run(args));
    let (out, err) = text(&o);
    (o.status.success(), out, err)
}

/// `pushusers -r` for user 3 in context 1 and [`CLIENT`].
fn remove_registration(dir: &str) -> (bool, String, String) {
    cli(&[
        "pushusers",
        "--config-dir",
        dir,
        "-r",
        "-c",
        "1",
        "-u",
        "3",
        "-i",
        CLIENT,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushusers_list_and_remove_against_the_running_server_clear_metadata() {
    let admin_port = support::free_port();
    let c = chain::start(&format!("mock.admin.listen=127.0.0.1:{admin_port}\n")).await;
    assert_eq!(
        c.h.server.as_ref().unwrap().admin_addr.port(),
        admin_port,
        "the admin listener must be on the fixed port the CLI reads"
    );
    let l = c.h.session("alice", "pw", CLIENT).await;
    c.h.subscribe(&l, APNS_TOKEN, "apn").await;
    c.wait_metadata("alice", "user=3@1").await;
    let dir = c.h.dir.path().to_str().unwrap().to_string();

    // -l: the table, read from the running server (no database fallback notice).
    let (ok, out, err) = cli(&["pushusers", "--config-dir", &dir, "-l"]);
    assert!(ok, "{out}{err}");
    assert!(
        !err.contains("No running server"),
        "fell back to the DB: {err}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Context | User | Client", "{out}");
    assert!(lines[1].starts_with("--------"), "{out}");
    assert_eq!(lines[2], format!("1       | 3    | {CLIENT}"), "{out}");
    assert_eq!(lines.len(), 3, "{out}");

    // Running listeners: listpushusers and pushusers without a flag.
    let (ok, out, err) = cli(&["listpushusers", "--config-dir", &dir]);
    assert!(ok, "{err}");
    assert_eq!(out, "user=3, context=1, permanent=true\n");
    let (ok, out, err) = cli(&["pushusers", "--config-dir", &dir]);
    assert!(ok, "{err}");
    assert_eq!(out, "user=3, context=1, permanent=true\n");

    // -r: OX's message, the registration is gone, and Dovecot's METADATA is NIL.
    let (ok, out, err) = remove_registration(&dir);
    assert!(ok, "{out}{err}");
    assert!(
        !err.contains("No running server"),
        "fell back to the DB: {err}"
    );
    assert_eq!(
        out.trim(),
        format!(
            "Push registration successfully deleted for user 3 in context 1 for client '{CLIENT}'"
        )
    );
    c.wait_metadata("alice", "").await;
    assert_eq!(
        tokio::task::block_in_place(|| c.dc.get_metadata("alice")),
        "",
        "METADATA must be NIL after pushusers -r"
    );
    assert_eq!(
        c.h.get_json(c.h.admin("/mock/registrations")).await,
        serde_json::json!([])
    );
    assert_eq!(
        c.h.get_json(c.h.admin("/mock/pushusers")).await,
        serde_json::json!([])
    );

    let (ok, out, _) = cli(&["pushusers", "--config-dir", &dir, "-l"]);
    assert!(ok);
    assert_eq!(out.trim(), "No registered push users.");
    let (ok, out, _) = cli(&["pushusers", "--config-dir", &dir]);
    assert!(ok);
    assert_eq!(out.trim(), "No running push users on this node.");
    let (ok, out, _) = cli(&["listpushusers", "--config-dir", &dir]);
    assert!(ok);
    assert_eq!(out, "");
    // A second -r finds nothing.
    let (ok, out, _) = remove_registration(&dir);
    assert!(ok);
    assert_eq!(
        out.trim(),
        format!("No such push registration for user 3 in context 1 for client '{CLIENT}'")
    );
}

#[test]
fn pushusers_says_when_neither_server_nor_database_is_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    std::fs::write(
        dir.path().join("mock.properties"),
        format!("mock.admin.listen=127.0.0.1:{port}\nmock.db=db/none.sqlite\n"),
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    for args in [
        vec!["pushusers", "--config-dir", d, "-l"],
        vec![
            "pushusers",
            "--config-dir",
            d,
            "-r",
            "-c",
            "1",
            "-u",
            "3",
            "-i",
            CLIENT,
        ],
    ] {
        let o = run(&args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {out}{err}");
        assert_eq!(out, "", "{args:?}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line expected: {err}");
        assert!(
            lines[0].contains("Neither the running server")
                && lines[0].contains(&format!("127.0.0.1:{port}"))
                && lines[0].contains("none.sqlite")
                && lines[0].contains("is reachable"),
            "{err}"
        );
        // It must not have created the database while looking.
        assert!(!dir.path().join("db/none.sqlite").exists());
    }
    // listpushusers needs the server.
    let o = run(&["listpushusers", "--config-dir", d]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("No running mock-middleware at"), "{err}");
}

/// Something answers on the admin port with a server error: the CLI says so and fails, it
/// does not report "No such push registration" or an empty list.
#[test]
fn pushusers_reports_a_failing_admin_listener() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((s, _)) = listener.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let body = "{\"error\":\"store failed: disk I/O error\"}";
            let _ = (&s).write_all(
                format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mock.properties"),
        format!("mock.admin.listen=127.0.0.1:{port}\nmock.db=none.sqlite\n"),
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let results: Vec<(Vec<&str>, Output)> = [
        vec!["pushusers", "--config-dir", d, "-l"],
        vec![
            "pushusers",
            "--config-dir",
            d,
            "-r",
            "-c",
            "1",
            "-u",
            "3",
            "-i",
            CLIENT,
        ],
        vec!["listpushusers", "--config-dir", d],
    ]
    .into_iter()
    .map(|a| {
        let o = run(&a);
        (a, o)
    })
    .collect();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    server.join().unwrap();
    for (args, o) in results {
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {out}{err}");
        assert_eq!(out, "", "{args:?}");
        assert!(
            err.contains("failed: 500 Internal Server Error store failed: disk I/O error"),
            "{args:?}: {err}"
        );
    }
}
