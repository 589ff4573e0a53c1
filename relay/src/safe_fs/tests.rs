use super::*;
use std::os::unix::fs::{symlink, PermissionsExt};

fn mkfifo(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

fn spool() -> (tempfile::TempDir, SpoolDir) {
    let t = tempfile::tempdir().unwrap();
    let d = SpoolDir::open(&t.path().join("spool")).unwrap();
    (t, d)
}

#[test]
fn the_spool_is_created_0700_and_a_loose_mode_is_tightened() {
    let (t, _d) = spool();
    let md = std::fs::metadata(t.path().join("spool")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o700);
    std::fs::set_permissions(
        t.path().join("spool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    SpoolDir::open(&t.path().join("spool")).unwrap();
    let md = std::fs::metadata(t.path().join("spool")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o700);
}

#[test]
fn a_symlinked_spool_directory_is_refused() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("real")).unwrap();
    symlink(t.path().join("real"), t.path().join("spool")).unwrap();
    let e = SpoolDir::open(&t.path().join("spool")).err().unwrap();
    assert!(e.contains("not a symlink"), "{e}");
}

#[test]
fn a_spool_owned_by_someone_else_is_refused() {
    if euid() != 0 {
        return; // needs root to hand the directory to another uid
    }
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("spool");
    std::fs::create_dir(&p).unwrap();
    std::os::unix::fs::chown(&p, Some(5000), Some(5000)).unwrap();
    let e = SpoolDir::open(&p).err().unwrap();
    assert!(e.contains("owned by uid 5000"), "{e}");
}

#[test]
fn a_spool_below_a_directory_others_can_change_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let open = t.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = SpoolDir::open(&open.join("spool")).err().unwrap();
    assert!(e.contains("someone other than root"), "{e}");
    // Sticky, as /tmp: fine.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    SpoolDir::open(&open.join("spool")).unwrap();
}

#[test]
fn planted_symlink_fifo_and_huge_file_are_never_read() {
    let (t, d) = spool();
    let dir = t.path().join("spool");
    std::fs::write(t.path().join("secret"), b"x").unwrap();
    symlink(t.path().join("secret"), dir.join("link")).unwrap();
    mkfifo(&dir.join("fifo"));
    let f = File::create(dir.join("huge")).unwrap();
    f.set_len(50 << 20).unwrap();
    let e = d.read("link", 1 << 20).unwrap_err();
    assert!(e.contains("link"), "{e}");
    let start = std::time::Instant::now();
    let e = d.read("fifo", 1 << 20).unwrap_err();
    assert!(e.contains("not a regular file"), "{e}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(1),
        "never waits on a FIFO"
    );
    let e = d.read("huge", 1 << 20).unwrap_err();
    assert!(e.contains("more than"), "{e}");
    std::fs::write(dir.join("ok"), b"data").unwrap();
    assert_eq!(d.read("ok", 10).unwrap(), b"data");
}

#[test]
fn create_never_reuses_an_existing_name() {
    let (t, d) = spool();
    symlink("/etc/passwd", t.path().join("spool/journal-1.log")).unwrap();
    assert!(d.create("journal-1.log").is_err());
    assert!(d.create("journal-2.log").is_ok());
    assert!(d.create("journal-2.log").is_err());
    let md = std::fs::metadata(t.path().join("spool/journal-2.log")).unwrap();
    assert_eq!(md.mode() & 0o777, 0o600);
}

#[test]
fn one_relay_per_spool() {
    let (_t, d) = spool();
    let _held = d.lock().unwrap();
    let e = d.lock().unwrap_err();
    assert!(e.contains("another ox-push-relay"), "{e}");
}

#[test]
fn trusted_reads_refuse_what_others_could_plant() {
    let t = tempfile::tempdir().unwrap();
    let ca = t.path().join("ca.pem");
    std::fs::write(&ca, b"pem").unwrap();
    assert_eq!(read_trusted(&ca, 100).unwrap(), b"pem");
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert!(read_trusted(&ca, 100)
        .unwrap_err()
        .contains("writable only"));
    let fifo = t.path().join("fifo");
    mkfifo(&fifo);
    assert!(read_trusted(&fifo, 100).is_err());
    let open = t.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(open.join("ca.pem"), b"pem").unwrap();
    assert!(read_trusted(&open.join("ca.pem"), 100)
        .unwrap_err()
        .contains("someone other than root"));
    // A symlink is followed only to a file that passes the same checks.
    symlink(&ca, t.path().join("link.pem")).unwrap();
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        read_trusted(&t.path().join("link.pem"), 100).unwrap(),
        b"pem"
    );
    assert!(read_trusted(&ca, 2).unwrap_err().contains("larger"));
}
