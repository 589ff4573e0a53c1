use super::*;

fn item(n: u64) -> Item {
    Item {
        id: format!("id{n}"),
        created_ms: 1000 + n,
        body: format!("{{\"n\":{n}}}").into_bytes(),
        journal: None,
    }
}

fn root(name: &str) -> PathBuf {
    let r = std::env::temp_dir().join(format!("oxspool-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&r);
    r
}

#[test]
fn journal_records_and_torn_tail() {
    let mut data = b"N a 1 2\n{}\nN b 2 3\nabc\nA a\n".to_vec();
    let p = pending_records(&data);
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].id.as_str(), p[0].body.as_slice()), ("b", &b"abc"[..]));
    // A torn record at the end is ignored.
    data.extend_from_slice(b"N c 3 10\n{\"x\":");
    assert_eq!(pending_records(&data).len(), 1);
}

#[test]
fn write_ack_truncate_and_leftovers_of_an_earlier_process() {
    let root = root("journal");
    {
        let s = Spool::open(&root, "k", "http://h/", false).unwrap();
        let (mut a, mut b) = (item(1), item(2));
        s.write(&mut a).unwrap();
        s.write(&mut b).unwrap();
        s.ack(&a);
        let dir = s.dir().unwrap();
        assert_eq!(pending_in_dir(&dir), 1);
        s.ack(&b);
        // Nothing pending.
        assert_eq!(pending_in_dir(&dir), 0);
        let mut c = item(3);
        s.write(&mut c).unwrap();
        assert_eq!(pending_in_dir(&dir), 1);
    }
    // A new spool with the same pid finds item 3 at start...
    let s = Spool::open(&root, "k", "http://h/", false).unwrap();
    let got = s.claim_orphans(true);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].id.as_str(), got[0].body.as_slice()),
        ("id3", &b"{\"n\":3}"[..])
    );
    // ...and later scans leave our own journal alone.
    assert!(s.claim_orphans(false).is_empty());
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn dead_process_journal_is_claimed_live_one_is_not() {
    let root = root("claim");
    let s = Spool::open(&root, "k", "l", false).unwrap();
    let dir = s.dir().unwrap();
    // A live process: its lock file locked by another descriptor.
    let live = File::create(dir.join("owner-4242424.lock")).unwrap();
    assert!(flock_nb(&live));
    fs::write(dir.join("journal-4242424-0.log"), b"N y 1 2\n{}\n").unwrap();
    // A dead one: no lock holder.
    fs::write(
        dir.join("journal-4242425-0.log"),
        b"N x 5 2\n{}\nN z 6 2\n[]\n",
    )
    .unwrap();
    // The ack of z sits in a later segment.
    fs::write(dir.join("journal-4242425-1.log"), b"A z\n").unwrap();
    let got = s.claim_orphans(false);
    assert_eq!(got.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["x"]);
    assert!(
        !dir.join("journal-4242425-0.log").exists() && !dir.join("journal-4242425-1.log").exists()
    );
    // Claimed items live on in our journal until acknowledged.
    assert_eq!(pending_in_dir(&dir), 2); // x (ours) + y (live process)
    s.ack(&got[0]);
    assert_eq!(pending_in_dir(&dir), 1);
    drop(live);
    assert_eq!(s.claim_orphans(false).len(), 1);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn segments_rotate_and_done_ones_are_removed() {
    let root = root("segments");
    let s = Spool::open(&root, "k", "l", false).unwrap();
    let dir = s.dir().unwrap();
    let big = vec![b'x'; 300 * 1024];
    let mut items: Vec<Item> = (0..8)
        .map(|n| Item {
            body: big.clone(),
            ..item(n)
        })
        .collect();
    for it in items.iter_mut() {
        s.write(it).unwrap();
    }
    let segs = |d: &Path| {
        fs::read_dir(d)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("journal-"))
            .count()
    };
    assert!(segs(&dir) >= 2, "{}", segs(&dir));
    assert_eq!(pending_in_dir(&dir), 8);
    // Acknowledging the oldest items removes the segments they filled.
    for it in &items[..4] {
        s.ack(it);
    }
    assert_eq!(pending_in_dir(&dir), 4);
    let on_disk: u64 = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("journal-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(on_disk < 6 * 300 * 1024, "{on_disk}");
    for it in &items[4..] {
        s.ack(it);
    }
    assert_eq!(pending_in_dir(&dir), 0);
    assert_eq!(segs(&dir), 1);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn fsync_mode_writes_durably_readable_records() {
    let root = root("fsync");
    let s = Spool::open(&root, "k", "l", true).unwrap();
    let mut a = item(7);
    s.write(&mut a).unwrap();
    assert_eq!(pending_in_dir(&s.dir().unwrap()), 1);
    let _ = fs::remove_dir_all(&root);
}
