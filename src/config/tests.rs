use super::*;

#[test]
fn tokenizer_matches_dovecot() {
    let m = tokenize("url=http://a/b?x=1  user_from_metadata max_retries=2 max_retries=3");
    assert_eq!(m["url"], "http://a/b?x=1");
    assert_eq!(m["user_from_metadata"], "");
    assert_eq!(m["max_retries"], "3");
}

#[test]
fn time_intervals_like_settings_get_time() {
    assert_eq!(parse_time_secs("0"), Ok(0));
    assert_eq!(parse_time_secs("10s"), Ok(10));
    assert_eq!(parse_time_secs("2mins"), Ok(120));
    assert_eq!(parse_time_secs("1 h"), Ok(3600));
    assert_eq!(parse_time_secs("2000ms"), Ok(2));
    assert!(parse_time_secs("60").unwrap_err().contains("missing units"));
    assert!(parse_time_secs("1500ms").is_err());
    assert!(parse_time_secs("10x").is_err());
    assert!(parse_time_secs("secs").is_err());
    assert!(parse_time_secs("5secsx").is_err());
    assert_eq!(parse_time_msecs("100ms"), Ok(100));
    assert_eq!(parse_time_msecs("1s"), Ok(1000));
}

#[test]
fn sizes() {
    assert_eq!(parse_size("64M"), Ok(64 << 20));
    assert_eq!(parse_size("10kib"), Ok(10 << 10));
    assert_eq!(parse_size("123"), Ok(123));
    assert!(parse_size("12q").is_err());
}

#[test]
fn defaults_as_builtin() {
    let (c, w) = parse("url=http://u:p@127.0.0.1:8009/notify").unwrap();
    assert!(w.is_empty());
    assert!(!c.user_from_metadata);
    assert_eq!(c.cache_lifetime, Duration::from_secs(60));
    assert_eq!(c.max_retries, 1);
    assert_eq!(c.timeout, Duration::from_millis(2000));
    assert!(c.folders.watches(b"INBOX"));
    assert!(!c.folders.watches(b"inbox"));
    assert_eq!(c.events, Event::MessageNew.bit());
    assert!(!c.notification_id);
}

#[test]
fn disabling_errors_name_key_value_and_hide_password() {
    let e = parse("user_from_metadata").unwrap_err();
    assert!(e.contains("requires the url parameter"), "{e}");
    let e = parse("url=http://u:secret@h/x cache_lifetime=60").unwrap_err();
    assert!(e.contains("cache_lifetime 60"), "{e}");
    assert!(e.contains("missing units"), "{e}");
    let e = parse("url=/relative").unwrap_err();
    assert!(e.contains("Failed to parse OX REST URL /relative"), "{e}");
    let e = parse("url=ftp://u:secret@h/x").unwrap_err();
    assert!(!e.contains("secret"), "{e}");
}

#[test]
fn fallbacks_are_reported() {
    let (c, w) =
        parse("url=http://h/x max_retries=abc timeout_msecs=-1 bogus=1 events=messageNew,nope")
            .unwrap();
    assert_eq!(c.max_retries, 1);
    assert_eq!(c.timeout, Duration::from_millis(2000));
    let text = format!("{w:?}");
    assert!(text.contains("max_retries=abc"), "{text}");
    assert!(text.contains("timeout_msecs=-1"), "{text}");
    assert!(text.contains("\\\"bogus\\\""), "{text}");
    assert!(text.contains("\\\"nope\\\""), "{text}");
}

#[test]
fn opt_in_options() {
    let (c, w) = parse(
        "url=http://h/x folders=INBOX,Work events=messageNew,flagsSet notification_id \
         spool_dir=/tmp/s spool_max_size=1M max_age=5mins shutdown_timeout=50ms spool_fsync=yes",
    )
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert!(c.folders.watches(b"Work"));
    assert_eq!(c.events, Event::MessageNew.bit() | Event::FlagsSet.bit());
    assert!(c.notification_id && c.spool_fsync);
    assert_eq!(c.spool_max_size, 1 << 20);
    assert_eq!(c.max_age, Duration::from_secs(300));
    assert_eq!(c.shutdown_timeout, Duration::from_millis(50));
    let (c, _) = parse("url=http://h/x folders=*").unwrap();
    assert!(c.folders.watches(b"Anything"));
}

#[test]
fn cached_parse_gives_what_parse_gives() {
    for raw in [
        "url=http://u:p@127.0.0.1:1/n timeout_msecs=300 spool_max_size=1M",
        "url=http://127.0.0.1:1/n timeout_msecs=soon",
        "user_from_metadata",
    ] {
        let direct = format!("{:?}", parse(raw));
        assert_eq!(format!("{:?}", parse_cached(raw)), direct, "{raw}");
        assert_eq!(format!("{:?}", parse_cached(raw)), direct, "{raw} (cached)");
    }
}
