use super::*;

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
