use super::*;

#[test]
fn parses_the_usual_form() {
    let u = EndpointUrl::parse(
        "http://login:pass@node1.example.com:8009/preliminary/http-notify/v1/notify",
    )
    .unwrap();
    assert!(!u.https);
    assert_eq!(u.authority, "node1.example.com:8009");
    assert_eq!(u.port, 8009);
    assert_eq!(u.target, "/preliminary/http-notify/v1/notify");
    assert_eq!(u.basic_auth().unwrap(), "Basic bG9naW46cGFzcw==");
    assert_eq!(
        u.masked,
        "http://login:***@node1.example.com:8009/preliminary/http-notify/v1/notify"
    );
    assert!(!format!("{u:?}").contains("pass@"));
}

#[test]
fn host_without_port_and_empty_path() {
    let u = EndpointUrl::parse("https://h.example").unwrap();
    assert_eq!(
        (u.authority.as_str(), u.port, u.target.as_str()),
        ("h.example", 443, "/")
    );
    let u = EndpointUrl::parse("http://h:80?x=1#frag").unwrap();
    assert_eq!((u.authority.as_str(), u.target.as_str()), ("h:80", "/?x=1"));
    let u = EndpointUrl::parse("http://[::1]:9/n").unwrap();
    assert_eq!(
        (u.connect_host.as_str(), u.authority.as_str()),
        ("::1", "[::1]:9")
    );
}

#[test]
fn auth_rules() {
    assert!(EndpointUrl::parse("http://u@h/")
        .unwrap()
        .basic_auth()
        .is_none());
    assert!(EndpointUrl::parse("http://h/")
        .unwrap()
        .basic_auth()
        .is_none());
    let u = EndpointUrl::parse("http://us%40r:p%2Bw@h/").unwrap();
    assert_eq!(
        u.basic_auth().unwrap(),
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("us@r:p+w")
        )
    );
    assert_eq!(u.masked, "http://us%40r:***@h/");
}

#[test]
fn rejects_what_dovecot_rejects() {
    assert!(EndpointUrl::parse("/notify")
        .unwrap_err()
        .contains("Relative"));
    assert!(EndpointUrl::parse("ftp://h/").is_err());
    assert!(EndpointUrl::parse("http:///x").is_err());
    assert!(EndpointUrl::parse("http://h:99999/").is_err());
    assert!(EndpointUrl::parse("http://h:abc/").is_err());
}

#[test]
fn masking_never_shows_the_password() {
    assert_eq!(mask_url("http://a:b@c/d"), "http://a:***@c/d");
    assert_eq!(mask_url("garbage:b@c"), "garbage:***@c");
    assert_eq!(mask_url("http://c/d@e"), "http://c/d@e");
}

#[test]
fn port_zero_is_refused_at_parse_time() {
    assert!(EndpointUrl::parse("http://h:0/n")
        .unwrap_err()
        .contains("Port 0"));
}

#[test]
fn a_password_split_by_a_space_is_not_quoted_in_the_error() {
    // `url=http://u:LEAK secret@h/` is split by the tokenizer at the space:
    // the first half looks like host `u` and port `LEAK`.
    let e = EndpointUrl::parse("http://u:LEAKa").unwrap_err();
    assert!(!e.contains("LEAK"), "{e}");
    assert!(e.contains("percent-encoded"), "{e}");
}

#[test]
fn as_str_keeps_the_credentials_for_the_relay() {
    let u = EndpointUrl::parse("http://a:b@h/n").unwrap();
    assert_eq!(u.as_str(), "http://a:b@h/n");
    assert!(!format!("{u:?}").contains(":b@"));
}
