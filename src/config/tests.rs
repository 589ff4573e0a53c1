use super::*;

#[test]
fn tokenizer_matches_dovecot() {
    let m = tokenize("url=http://a/b?x=1  user_from_metadata max_retries=2 max_retries=3");
    assert_eq!(m["url"], "http://a/b?x=1");
    assert_eq!(m["user_from_metadata"], "");
    assert_eq!(m["max_retries"], "3");
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
    assert!(e.contains("Failed to parse OX REST URL (a path)"), "{e}");
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
         relay_socket=/run/x/ox-push max_age=5mins shutdown_timeout=50ms",
    )
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert!(c.folders.watches(b"Work"));
    assert_eq!(c.events, Event::MessageNew.bit() | Event::FlagsSet.bit());
    assert!(c.notification_id);
    assert_eq!(c.relay_socket, Some(PathBuf::from("/run/x/ox-push")));
    assert_eq!(c.max_age, Duration::from_secs(300));
    assert_eq!(c.shutdown_timeout, Duration::from_millis(50));
    let (c, _) = parse("url=http://h/x folders=*").unwrap();
    assert!(c.folders.watches(b"Anything"));
}

#[test]
fn spool_keys_say_where_they_moved() {
    let (_, w) =
        parse("url=http://h/x spool_dir=/tmp/s spool_max_size=1M spool_fsync=yes").unwrap();
    let text = format!("{w:?}");
    for (key, to) in [
        ("spool_dir", "--spool DIR"),
        ("spool_max_size", "--spool-max-size"),
        ("spool_fsync", "--fsync"),
    ] {
        assert!(
            text.contains(&format!("{key} is no longer a driver setting")),
            "{text}"
        );
        assert!(text.contains(to), "{text}");
    }
}

#[test]
fn shutdown_timeout_is_capped_and_says_so() {
    let (c, w) = parse("url=http://h/x shutdown_timeout=1000h").unwrap();
    assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
    assert!(format!("{w:?}").contains("above the maximum"), "{w:?}");
}

#[test]
fn a_password_with_a_space_leaks_neither_half() {
    // The tokenizer cuts `url=http://u:LEAK SECRET@h/n` at the space.
    let e = parse("url=http://u:LEAK SECRET@h/n").unwrap_err();
    assert!(!e.contains("LEAK") && !e.contains("SECRET"), "{e}");
    // With a valid first half, the second half becomes an "unknown key".
    let (_, w) = parse("url=http://u@h:8009/n pass SECRET@h/n").unwrap();
    let text = format!("{w:?}");
    assert!(!text.contains("SECRET"), "{text}");
    assert!(text.contains("not a setting name"), "{text}");
}

#[test]
fn port_zero_is_refused_at_config_time() {
    let e = parse("url=http://127.0.0.1:0/n").unwrap_err();
    assert!(e.contains("Port 0"), "{e}");
}

#[test]
fn cached_parse_gives_what_parse_gives() {
    for raw in [
        "url=http://u:p@127.0.0.1:1/n timeout_msecs=300 max_age=1mins",
        "url=http://127.0.0.1:1/n timeout_msecs=soon",
        "user_from_metadata",
    ] {
        let direct = format!("{:?}", parse(raw));
        assert_eq!(format!("{:?}", parse_cached(raw)), direct, "{raw}");
        assert_eq!(format!("{:?}", parse_cached(raw)), direct, "{raw} (cached)");
        assert!(first_report(raw));
        assert!(!first_report(raw), "complaints are logged once per process");
    }
}
