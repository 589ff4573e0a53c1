use super::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

fn url(port: u16) -> EndpointUrl {
    EndpointUrl::parse(&format!("http://u:p@127.0.0.1:{port}/notify?x=1")).unwrap()
}

#[test]
fn request_has_builtin_header_set_and_order() {
    let date = SystemTime::UNIX_EPOCH + Duration::from_secs(784111777);
    let req = request_bytes(&url(1), b"{}", &[], date);
    assert_eq!(
        String::from_utf8(req).unwrap(),
        "PUT /notify?x=1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
         Authorization: Basic dTpw\r\nContent-Length: 2\r\nConnection: Keep-Alive\r\n\
         Content-Type: application/json; charset=utf-8\r\n\r\n{}"
    );
}

fn serve(responses: Vec<&'static [u8]>) -> (u16, thread::JoinHandle<usize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        let mut served = 0;
        let (mut s, _) = l.accept().unwrap();
        for r in responses {
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(2).any(|w| w == b"{}") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    return served;
                }
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(r).unwrap();
            served += 1;
        }
        served
    });
    (port, h)
}

#[test]
fn keep_alive_and_response_forms() {
    let (port, h) = serve(vec![
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{\"success\":true}",
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    ]);
    let mut c = Client::new(url(port), Duration::from_secs(5), TlsSettings::default());
    assert_eq!(c.send(b"{}", &[]).unwrap().status, 204);
    assert_eq!(c.send(b"{}", &[]).unwrap().status, 200);
    let r = c.send(b"{}", &[]).unwrap();
    assert_eq!(
        (r.status, r.retry_after),
        (503, Some(Duration::from_secs(7)))
    );
    assert_eq!(c.send(b"{}", &[]).unwrap().status, 201);
    assert_eq!(h.join().unwrap(), 4);
}

#[test]
fn timeout_and_refused() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut c = Client::new(
        url(port),
        Duration::from_millis(200),
        TlsSettings::default(),
    );
    let t = Instant::now();
    assert_eq!(c.send(b"{}", &[]), Err(TransportError::Timeout));
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(l);
    let mut c = Client::new(
        url(port),
        Duration::from_millis(200),
        TlsSettings::default(),
    );
    assert!(matches!(
        c.send(b"{}", &[]),
        Err(TransportError::Connect(_))
    ));
}

/// Reads from `s` until `marker` has been seen.
fn read_until(s: &mut std::net::TcpStream, marker: &[u8]) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(marker.len()).any(|w| w == marker) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "EOF before {marker:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn server_closing_a_kept_alive_connection_is_not_an_attempt() {
    // First request answered with keep-alive, then the server closes; the
    // second request must go out on a fresh connection and succeed.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = l.accept().unwrap();
            read_until(&mut s, b"{}");
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        }
    });
    let mut c = Client::new(url(port), Duration::from_secs(5), TlsSettings::default());
    assert_eq!(c.send(b"{}", &[]).unwrap().status, 204);
    thread::sleep(Duration::from_millis(50));
    assert_eq!(c.send(b"{}", &[]).unwrap().status, 204);
    h.join().unwrap();
}

#[test]
fn response_parsing() {
    assert_eq!(parse_response(b"HTTP/1.1 204 No", false), Ok(None));
    let (r, keep, n) = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false)
        .unwrap()
        .unwrap();
    assert_eq!((r.status, keep, n), (200, true, 40));
    let (_, keep, _) = parse_response(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", true)
        .unwrap()
        .unwrap();
    assert!(!keep);
    assert_eq!(
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok", true),
        Err("EOF in response body".to_string())
    );
    assert_eq!(parse_response(b"", true), Err("EOF".to_string()));
    assert!(parse_response(b"SMTP 250\r\n\r\n", false).is_err());
}

#[test]
fn chunked_detection() {
    assert!(chunked_complete(b"3\r\nabc\r\n0\r\n\r\n"));
    assert!(!chunked_complete(b"3\r\nabc\r\n0\r\n"));
    assert!(!chunked_complete(b"5\r\nab"));
}

#[test]
fn early_answer_before_the_request_is_written_closes_the_connection() {
    // The server answers 413 after the head of a large request without
    // reading the body: that connection must not carry the next request.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        read_until(&mut s, b"\r\n\r\n");
        s.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        let (mut s2, _) = l.accept().unwrap();
        read_until(&mut s2, b"{}");
        s2.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        drop(s);
    });
    let mut c = Client::new(url(port), Duration::from_secs(5), TlsSettings::default());
    let big = vec![b'x'; 16 << 20];
    assert_eq!(c.send(&big, &[]).unwrap().status, 413);
    assert_eq!(c.send(b"{}", &[]).unwrap().status, 204);
    h.join().unwrap();
}
