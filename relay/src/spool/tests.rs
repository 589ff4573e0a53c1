use super::*;
use ox_push_record::{Policy, Target};

fn item(n: u8, body: usize) -> Item {
    Item {
        id: [n; 16],
        created_ms: u64::from(n),
        policy: Policy {
            timeout_ms: 1000,
            max_age_secs: 60,
            notification_id: false,
        },
        target: Target {
            url: "http://u:p@127.0.0.1:1/n".into(),
            tls_verify: true,
            ca_file: None,
            ca_dir: None,
        },
        body: vec![b'b'; body],
    }
}

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn files(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("journal-"))
        .collect();
    v.sort();
    v
}

#[test]
fn pending_items_survive_a_restart_and_done_ones_do_not() {
    let t = dir();
    let p = t.path().join("spool");
    {
        let (mut s, r) = Spool::open(&p, false).unwrap();
        assert!(r.items.is_empty());
        let a = s.add(&item(1, 10));
        s.add(&item(2, 10));
        s.flush().unwrap();
        s.done(&[1; 16], a);
        s.flush().unwrap();
    }
    let (_s, r) = Spool::open(&p, true).unwrap();
    let ids: Vec<_> = r.items.iter().map(|(i, _)| i.id[0]).collect();
    assert_eq!(ids, vec![2]);
    assert_eq!(r.items[0].0, item(2, 10));
    assert_eq!(r.done, vec![[1; 16]]);
}

#[test]
fn a_second_relay_on_the_same_spool_is_refused() {
    let t = dir();
    let p = t.path().join("spool");
    let _first = Spool::open(&p, false).unwrap();
    let e = Spool::open(&p, false).err().unwrap();
    assert!(e.contains("another ox-push-relay"), "{e}");
}

#[test]
fn finished_segments_go_and_the_disk_holds_about_what_is_pending() {
    let t = dir();
    let p = t.path().join("spool");
    let (mut s, _) = Spool::open(&p, false).unwrap();
    let mut segs = Vec::new();
    for n in 0..40u8 {
        segs.push(s.add(&item(n, 300_000)));
        s.flush().unwrap();
    }
    assert!(files(&p).len() >= 3, "{:?}", files(&p));
    for (n, seg) in segs.iter().enumerate() {
        s.done(&[n as u8; 16], *seg);
    }
    s.flush().unwrap();
    assert_eq!(
        files(&p).len(),
        1,
        "only the current segment: {:?}",
        files(&p)
    );
}

#[test]
fn a_long_retrying_item_is_moved_so_old_segments_can_go() {
    let t = dir();
    let p = t.path().join("spool");
    let (mut s, _) = Spool::open(&p, false).unwrap();
    let stuck_seg = s.add(&item(200, 10));
    let mut n = 0u8;
    while s.segments() <= COMPACT_AFTER_SEGMENTS + 1 {
        let seg = s.add(&item(n, 500_000));
        s.flush().unwrap();
        s.done(&[n; 16], seg);
        n += 1;
    }
    s.flush().unwrap();
    let c = s.compact_candidates();
    assert_eq!(c, vec![([200; 16], stuck_seg)]);
    let new_seg = s.add(&item(200, 10));
    s.moved(&[200; 16], stuck_seg);
    s.flush().unwrap();
    assert!(s.segments() <= 2, "{}", s.segments());
    drop(s);
    let (_s, r) = Spool::open(&p, false).unwrap();
    assert_eq!(r.items.len(), 1);
    assert_eq!(r.items[0].1, new_seg.max(r.items[0].1));
}

#[test]
fn a_corrupt_record_is_skipped_and_the_rest_replayed() {
    let t = dir();
    let p = t.path().join("spool");
    {
        let (mut s, _) = Spool::open(&p, false).unwrap();
        for n in 1..=3 {
            s.add(&item(n, 50));
        }
        s.flush().unwrap();
    }
    let name = &files(&p)[0];
    let mut bytes = std::fs::read(p.join(name)).unwrap();
    let one = bytes.len() / 3;
    bytes[one + 40] ^= 0x55; // inside the second item
    std::fs::write(p.join(name), &bytes).unwrap();
    let (_s, r) = Spool::open(&p, false).unwrap();
    let ids: Vec<_> = r.items.iter().map(|(i, _)| i.id[0]).collect();
    assert_eq!(ids, vec![1, 3]);
}

#[test]
fn planted_files_in_the_spool_are_not_read() {
    let t = dir();
    let p = t.path().join("spool");
    drop(Spool::open(&p, false).unwrap());
    std::os::unix::fs::symlink("/etc/shadow", p.join(segment_name(0x10))).unwrap();
    let c = std::ffi::CString::new(p.join(segment_name(0x11)).to_str().unwrap()).unwrap();
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let start = std::time::Instant::now();
    let (_s, r) = Spool::open(&p, false).unwrap();
    assert!(r.items.is_empty());
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
    assert!(
        p.join(segment_name(0x10)).symlink_metadata().is_ok(),
        "left alone"
    );
}

#[test]
fn a_spool_of_pending_items_is_not_rewritten_over_and_over() {
    let t = dir();
    let p = t.path().join("spool");
    let (mut s, _) = Spool::open(&p, false).unwrap();
    // The middleware is down: everything stays pending, segments pile up.
    for n in 0..=80u8 {
        s.add(&item(n, 300_000));
        s.flush().unwrap();
    }
    assert!(s.segments() > COMPACT_AFTER_SEGMENTS, "{}", s.segments());
    assert!(
        s.compact_candidates().is_empty(),
        "a live segment is not worth moving"
    );
}
