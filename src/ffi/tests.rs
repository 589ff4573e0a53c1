use super::*;
use crate::log::Collect;

#[test]
fn guard_turns_a_panic_into_one_error_line_and_the_fallback() {
    install_panic_hook();
    let sink = Collect::default();
    let v = guard("ox_push_test_entry", Some(&sink), 7, || -> i32 {
        panic!("boom {}", 42)
    });
    assert_eq!(v, 7);
    let lines = sink.0.borrow();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].0, OxPushLogLevel::Error);
    assert!(
        lines[0]
            .1
            .starts_with("BUG: ox_push_test_entry panicked: boom 42 at src/ffi/tests.rs:"),
        "{}",
        lines[0].1
    );
}

#[test]
fn null_arguments_are_refused_not_dereferenced() {
    // SAFETY: NULL is allowed by each function's contract.
    unsafe {
        assert!(ox_push_instance_new(
            std::ptr::null(),
            std::ptr::null(),
            None,
            std::ptr::null_mut()
        )
        .is_null());
        ox_push_instance_free(std::ptr::null_mut());
        assert!(!ox_push_instance_enabled(std::ptr::null()));
        assert_eq!(
            ox_push_instance_submit(std::ptr::null(), std::ptr::null(), std::ptr::null_mut()),
            OxPushResult::Invalid
        );
        let mut p = std::ptr::null();
        let mut l = 0;
        assert_eq!(
            ox_push_instance_begin_txn(std::ptr::null_mut(), &mut p, &mut l),
            OxPushResult::Invalid
        );
    }
}

unsafe extern "C" fn collect_log(
    ctx: *mut c_void,
    level: OxPushLogLevel,
    msg: *const c_char,
    len: usize,
) {
    // SAFETY: ctx is the Collect passed below; msg has len bytes.
    let sink = unsafe { &*(ctx as *const Collect) };
    let bytes = unsafe { std::slice::from_raw_parts(msg.cast::<u8>(), len) };
    sink.log(level, &String::from_utf8_lossy(bytes));
}

#[test]
fn bad_config_through_the_c_api_gives_a_disabled_instance_and_one_line() {
    let sink = Collect::default();
    let settings = OxPushUserSettings {
        username: c"alice".as_ptr(),
        base_dir: std::ptr::null(),
        ca_file: std::ptr::null(),
        ca_dir: std::ptr::null(),
        verify_cert: true,
        debug: false,
        quiet: false,
    };
    // SAFETY: all pointers valid for the calls; sink outlives the instance.
    unsafe {
        let inst = ox_push_instance_new(
            c"url=http://u:pw@h/x cache_lifetime=60".as_ptr(),
            &settings,
            Some(collect_log),
            &sink as *const Collect as *mut c_void,
        );
        assert!(!inst.is_null());
        assert!(!ox_push_instance_enabled(inst));
        assert!(!ox_push_instance_watches(
            inst,
            OxPushBytes {
                ptr: b"INBOX".as_ptr(),
                len: 5
            }
        ));
        ox_push_instance_free(inst);
    }
    let lines = sink.0.borrow();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].1.contains("cache_lifetime 60"));
    assert!(!lines[0].1.contains("pw@"));
}
