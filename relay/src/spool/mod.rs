//! The durable spool: an append-only journal in segments, in a directory only
//! the relay's user can reach.
//!
//! A notification is journaled (`Item` record) before the relay acknowledges
//! it to the plugin; a sent or dropped one gets a `Done` record. Appends are
//! batched: [`Spool::add`]/[`Spool::done`] fill a buffer that
//! [`Spool::flush`] writes with one `write(2)` (and `fdatasync` with
//! `--fsync`). Segments rotate at [`SEGMENT_BYTES`]. A segment is removed
//! when it and every older one hold no pending notification (removing a newer
//! segment first could lose a `Done` for an older one's item); when old
//! segments pile up behind a few long-retrying items, those items are written
//! again into the current segment ([`Spool::compact_candidates`]) so that the
//! old ones can go. At start, every segment is read back with bounded sizes;
//! corrupt records are skipped with a log line.

pub mod journal;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::Path;

use ox_push_record::Item;

use crate::log;
use crate::safe_fs::SpoolDir;

/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
/// The largest journal record (an item is bounded by the record format).
const MAX_RECORD: usize = ox_push_record::frame::MAX_PAYLOAD;
/// The largest segment file read back (a segment ends at the first record
/// that crosses SEGMENT_BYTES).
const MAX_SEGMENT_FILE: u64 = SEGMENT_BYTES + MAX_RECORD as u64 + journal::HEADER as u64;
/// Old segments kept behind long-retrying items before those are moved.
const COMPACT_AFTER_SEGMENTS: usize = 4;

type Id = [u8; 16];

fn segment_name(no: u64) -> String {
    format!("journal-{no:016x}.log")
}

fn segment_no(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("journal-")?.strip_suffix(".log")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// What a previous run left: pending items (with their segment), and the ids
/// of items that were done (to drop repeats of them).
pub struct Replayed {
    pub items: Vec<(Item, u64)>,
    pub done: Vec<Id>,
}

pub struct Spool {
    dir: SpoolDir,
    _lock: File,
    fsync: bool,
    current_no: u64,
    current: File,
    current_bytes: u64,
    /// Pending item ids per segment (the current one included).
    live: BTreeMap<u64, HashSet<Id>>,
    /// Items ever written into each segment: a segment is worth compacting
    /// only when most of them are done.
    written: HashMap<u64, usize>,
    batch: Vec<u8>,
}

impl Spool {
    /// Opens the spool, reads back what a previous run left, and starts a new
    /// segment.
    pub fn open(path: &Path, fsync: bool) -> Result<(Spool, Replayed), String> {
        let dir = SpoolDir::open(path)?;
        let lock = dir.lock()?;
        let mut segments: Vec<u64> = dir.list()?.iter().filter_map(|n| segment_no(n)).collect();
        segments.sort_unstable();
        let mut items: HashMap<Id, (Item, u64)> = HashMap::new();
        let mut done = Vec::new();
        let mut live: BTreeMap<u64, HashSet<Id>> = BTreeMap::new();
        let mut written: HashMap<u64, usize> = HashMap::new();
        for &no in &segments {
            let name = segment_name(no);
            let buf = match dir.read(&name, MAX_SEGMENT_FILE) {
                Ok(b) => b,
                Err(e) => {
                    // Left alone (not removed either): an operator may look.
                    log::error(format!("journal {e}; its notifications are not replayed"));
                    continue;
                }
            };
            live.entry(no).or_default();
            let parsed = journal::parse(&buf, MAX_RECORD);
            for (offset, why) in &parsed.skipped {
                log::error(format!(
                    "journal {}/{name}: corrupt record at offset {offset} skipped ({why})",
                    path.display()
                ));
            }
            if let Some(offset) = parsed.torn_tail {
                log::warning(format!(
                    "journal {}/{name}: incomplete record at offset {offset} (a write cut by a \
                     crash) ignored",
                    path.display()
                ));
            }
            for (kind, payload) in parsed.records {
                match kind {
                    journal::Kind::Item => match Item::decode(payload) {
                        Ok(item) => {
                            *written.entry(no).or_default() += 1;
                            items.insert(item.id, (item, no));
                        }
                        Err(e) => log::error(format!(
                            "journal {}/{name}: undecodable item skipped ({e})",
                            path.display()
                        )),
                    },
                    journal::Kind::Done => {
                        if let Ok(id) = <Id>::try_from(payload) {
                            items.remove(&id);
                            done.push(id);
                        }
                    }
                }
            }
        }
        for (id, (_, no)) in &items {
            live.entry(*no).or_default().insert(*id);
        }
        let current_no = segments.last().map_or(1, |n| n + 1);
        let current = dir.create(&segment_name(current_no))?;
        live.entry(current_no).or_default();
        let mut spool = Spool {
            dir,
            _lock: lock,
            fsync,
            current_no,
            current,
            current_bytes: 0,
            live,
            written,
            batch: Vec::new(),
        };
        // Segments without pending items (all of them, after a clean run).
        spool.remove_dead_prefix();
        spool.dir.sync();
        let mut items: Vec<(Item, u64)> = items.into_values().collect();
        items.sort_by_key(|(i, no)| (*no, i.created_ms));
        Ok((spool, Replayed { items, done }))
    }

    pub fn path(&self) -> &Path {
        &self.dir.path
    }

    /// Journals an item (written at the next flush); returns its segment.
    pub fn add(&mut self, item: &Item) -> u64 {
        let mut payload = Vec::with_capacity(item.body.len() + 256);
        if item.encode(&mut payload).is_err() {
            // Decoded from a record with the same bounds: cannot happen.
            log::error("BUG: a valid item did not encode; not journaled");
        }
        journal::encode(journal::Kind::Item, &payload, &mut self.batch);
        self.live
            .entry(self.current_no)
            .or_default()
            .insert(item.id);
        *self.written.entry(self.current_no).or_default() += 1;
        self.current_no
    }

    /// Journals that an item is done (sent or dropped).
    pub fn done(&mut self, id: &Id, segment: u64) {
        journal::encode(journal::Kind::Done, id, &mut self.batch);
        if let Some(set) = self.live.get_mut(&segment) {
            set.remove(id);
        }
    }

    /// Writes the batch; on error nothing is acknowledged.
    pub fn flush(&mut self) -> Result<(), String> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let r = self.current.write_all(&self.batch).and_then(|()| {
            if self.fsync {
                self.current.sync_data()
            } else {
                Ok(())
            }
        });
        self.current_bytes += self.batch.len() as u64;
        self.batch.clear();
        r.map_err(|e| {
            format!(
                "writing the journal in {} failed: {e}",
                self.dir.path.display()
            )
        })?;
        if self.current_bytes >= SEGMENT_BYTES {
            self.rotate()?;
        }
        self.remove_dead_prefix();
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), String> {
        let no = self.current_no + 1;
        self.current = self.dir.create(&segment_name(no))?;
        self.current_no = no;
        self.current_bytes = 0;
        self.live.entry(no).or_default();
        self.dir.sync();
        Ok(())
    }

    /// Removes the oldest segments while they hold nothing pending.
    fn remove_dead_prefix(&mut self) {
        while let Some((&no, set)) = self.live.first_key_value() {
            if no == self.current_no || !set.is_empty() {
                break;
            }
            self.live.remove(&no);
            self.written.remove(&no);
            if let Err(e) = self.dir.unlink(&segment_name(no)) {
                log::error(e);
            }
        }
    }

    /// The pending ids of the oldest segment when old segments pile up behind
    /// a few of them (at most a quarter of what it holds is still pending):
    /// the caller writes them again with [`Spool::add`] (which moves them to
    /// the current segment) and flushes. A spool whose items are all pending
    /// (the middleware down) is left as it is: moving them would only rewrite
    /// the journal again and again.
    pub fn compact_candidates(&mut self) -> Vec<(Id, u64)> {
        if self.live.len() <= COMPACT_AFTER_SEGMENTS {
            return Vec::new();
        }
        let Some((&no, set)) = self.live.first_key_value() else {
            return Vec::new();
        };
        let written = self.written.get(&no).copied().unwrap_or(0);
        if no == self.current_no || set.len() * 4 > written {
            return Vec::new();
        }
        set.iter().map(|id| (*id, no)).collect()
    }

    /// Forgets `id` in `segment` (it was written again elsewhere).
    pub fn moved(&mut self, id: &Id, segment: u64) {
        if let Some(set) = self.live.get_mut(&segment) {
            set.remove(id);
        }
    }

    /// Segments on disk, for the counters.
    pub fn segments(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests;
