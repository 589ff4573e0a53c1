use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

#[test]
fn two_submits_two_distinct_requests() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        for _ in 0..2 {
            let mut len = 0;
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.strip_prefix("Content-Length: ") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            g.lock().unwrap().push(String::from_utf8(body).unwrap());
            w.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        }
    });
    let dir = tempfile_dir("two-submits");
    let raw = format!("url=http://127.0.0.1:{port}/n spool_dir={}", dir.display());
    let (cfg, _) = crate::config::parse(&raw).unwrap();
    let tls = TlsSettings::default();
    let (ep, err) = endpoint_for(&raw, &cfg, &tls).unwrap();
    assert!(err.is_none(), "{err:?}");
    submit(ep, b"{\"a\":1}".to_vec()).unwrap();
    submit(ep, b"{\"b\":2}".to_vec()).unwrap();
    // Nobody else drives the sender here: what Dovecot's ioloop would do.
    let until = Instant::now() + Duration::from_secs(5);
    while got.lock().unwrap().len() < 2 && Instant::now() < until {
        run();
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(*got.lock().unwrap(), ["{\"a\":1}", "{\"b\":2}"]);
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("oxpush-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}
