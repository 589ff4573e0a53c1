//! `ox-push-stats [SOCKET] [--json|--prometheus]`: the ox-push relay's counters,
//! per endpoint (queued, sent, retried, dropped by age, size or refusal, in
//! flight, spool depth, connections open) and for the relay as a whole. Asks
//! the running relay over its socket (default `/run/dovecot/ox-push`; reading
//! it needs root or Dovecot's internal group, as handing in notifications
//! does).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

const DEFAULT_SOCKET: &str = "/run/dovecot/ox-push";

fn table(v: &Value) -> String {
    let r = &v["relay"];
    let mut out = format!(
        "relay pid {}, up {}s, spool {} ({} pending, {} bytes, {} journal segment(s)), {} \
         client connection(s)\nreplayed {}, duplicates {}, records refused {}, protocol errors \
         {}, dropped in mail processes {}, journal errors {}\n\n",
        r["pid"],
        r["uptime_secs"],
        r["spool"].as_str().unwrap_or("?"),
        r["spool_depth"],
        r["spool_bytes"],
        r["journal_segments"],
        r["clients"],
        r["replayed"],
        r["duplicates"],
        r["records_refused"],
        r["protocol_errors"],
        r["dropped_in_mail_processes"],
        r["journal_errors"],
    );
    let cols = [
        "queued",
        "sent",
        "retried",
        "dropped_age",
        "dropped_size",
        "refused",
        "in_flight",
        "depth",
        "connections",
    ];
    let eps: Vec<&Value> = v["endpoints"].as_array().into_iter().flatten().collect();
    let width = eps
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap_or("?").len())
        .chain([8])
        .max()
        .unwrap_or(8);
    out.push_str(&format!("{:<width$}", "endpoint"));
    for c in cols {
        out.push_str(&format!(" {c:>12}"));
    }
    out.push('\n');
    for e in eps {
        out.push_str(&format!(
            "{:<width$}",
            e["endpoint"].as_str().unwrap_or("?")
        ));
        for c in cols {
            out.push_str(&format!(" {:>12}", e[c].as_u64().unwrap_or(0)));
        }
        out.push('\n');
    }
    out
}

fn main() -> ExitCode {
    let mut format = "table";
    let mut socket = PathBuf::from(DEFAULT_SOCKET);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => format = "json",
            "-h" | "--help" => {
                println!(
                    "usage: ox-push-stats [SOCKET] [--json]\n(default SOCKET: {DEFAULT_SOCKET})"
                );
                return ExitCode::SUCCESS;
            }
            other => socket = PathBuf::from(other),
        }
    }
    match ox_push_record::frame::request_stats(&socket, Duration::from_secs(5)) {
        Ok(json) => {
            let Ok(v) = serde_json::from_slice::<Value>(&json) else {
                eprintln!("ox-push-stats: the relay's answer is not JSON");
                return ExitCode::from(2);
            };
            if format == "json" {
                println!("{v}");
            } else {
                print!("{}", table(&v));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "ox-push-stats: cannot ask the relay at {}: {e} (is it running? reading it needs \
                 root or Dovecot's internal group)",
                socket.display()
            );
            ExitCode::from(2)
        }
    }
}
