//! `ox-push-stats [SPOOL_DIR] [--json]`: the per-endpoint counters of the ox_push
//! driver (queued, sent, retried, dropped by age or size, failed, replayed) and
//! the spool depth, summed over all processes, read from the spool directory.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut json = false;
    let mut root = PathBuf::from(ox_push::config::DEFAULT_SPOOL_DIR);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => json = true,
            "-h" | "--help" => {
                println!(
                    "usage: ox-push-stats [SPOOL_DIR] [--json]\n(default SPOOL_DIR: {})",
                    root.display()
                );
                return ExitCode::SUCCESS;
            }
            other => root = PathBuf::from(other),
        }
    }
    match ox_push::stats::collect(&root) {
        Ok(totals) if json => {
            let v: Vec<serde_json::Value> = totals
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "endpoint": t.label,
                        "counters": t.counters,
                        "spool_depth": t.depth,
                        "processes": t.processes,
                    })
                })
                .collect();
            println!("{}", serde_json::Value::from(v));
            ExitCode::SUCCESS
        }
        Ok(totals) => {
            print!("{}", ox_push::stats::render(&totals));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "ox-push-stats: cannot read spool directory {}: {e}",
                root.display()
            );
            ExitCode::from(2)
        }
    }
}
