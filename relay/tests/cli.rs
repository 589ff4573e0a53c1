//! The relay's command line as an operator meets it.

use std::process::Command;

fn relay(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ox-push-relay"))
        .args(args)
        .env_remove("SERVICE_NAME")
        .env_remove("LOG_SERVICE")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_option_value_is_one_fatal_line_naming_option_value_and_form() {
    let (code, err) = relay(&["--spool-max-size", "lots"]);
    assert_eq!(code, Some(89), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("Fatal: ")
            && err.contains("--spool-max-size")
            && err.contains("lots")
            && err.contains("expected a size such as 64M"),
        "{err}"
    );
}

#[test]
fn under_dovecot_the_line_speaks_the_child_log_protocol() {
    let out = Command::new(env!("CARGO_BIN_EXE_ox-push-relay"))
        .args(["--concurrency", "0"])
        .env("LOG_SERVICE", "1")
        .output()
        .unwrap();
    let err = out.stderr;
    // \x01, log type + 1 (fatal = 4 + 1), the pid, a space, the text.
    assert_eq!(
        &err[..2],
        b"\x01\x05",
        "{:?}",
        String::from_utf8_lossy(&err)
    );
    assert!(String::from_utf8_lossy(&err).contains("--concurrency"));
}
