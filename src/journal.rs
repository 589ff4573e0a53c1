//! The journal's record format: `N <id> <created ms> <body length>\n<body>\n`
//! when a notification is queued, `A <id>\n` when it is done. Parsing stops at
//! a torn record (a crash in the middle of a write).

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use crate::spool::Item;

pub(crate) fn new_record(item: &Item) -> Vec<u8> {
    let mut record = Vec::with_capacity(item.body.len() + 80);
    record.extend_from_slice(
        format!("N {} {} {}\n", item.id, item.created_ms, item.body.len()).as_bytes(),
    );
    record.extend_from_slice(&item.body);
    record.push(b'\n');
    record
}

/// The records of a journal that were queued and not acknowledged, in order.
pub fn pending_records(data: &[u8]) -> Vec<Item> {
    let mut items: Vec<Item> = Vec::new();
    let mut acked: HashSet<String> = HashSet::new();
    let mut pos = 0;
    while pos < data.len() {
        let Some(nl) = data[pos..].iter().position(|b| *b == b'\n') else {
            break;
        };
        let Ok(head) = std::str::from_utf8(&data[pos..pos + nl]) else {
            break;
        };
        let mut parts = head.split(' ');
        match parts.next() {
            Some("N") => {
                let (Some(id), Some(created), Some(len)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    break;
                };
                let (Ok(created_ms), Ok(len)) = (created.parse::<u64>(), len.parse::<usize>())
                else {
                    break;
                };
                let start = pos + nl + 1;
                // Body plus its terminating newline must be complete.
                if data.len() < start + len + 1 || data[start + len] != b'\n' {
                    break;
                }
                items.push(Item {
                    id: id.to_string(),
                    created_ms,
                    body: data[start..start + len].to_vec(),
                    journal: None,
                });
                pos = start + len + 1;
            }
            Some("A") => {
                let Some(id) = parts.next() else { break };
                acked.insert(id.to_string());
                pos += nl + 1;
            }
            _ => break,
        }
    }
    items.retain(|i| !acked.contains(&i.id));
    items
}

/// Notifications waiting in a spool directory's journals (for `ox-push-stats`
/// and tests).
pub fn pending_in_dir(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("journal-") && n.ends_with(".log")
        })
        .map(|e| {
            fs::read(e.path())
                .map(|d| pending_records(&d).len())
                .unwrap_or(0)
        })
        .sum()
}
