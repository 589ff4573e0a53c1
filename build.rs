//! Builds the Dovecot side of the plugin.
//!
//! 1. bindgen: the few Dovecot constants the Rust side uses (ABI string, event
//!    flag bits), from `dovecot-plugin/wrapper.h`, into `$OUT_DIR/dovecot_sys.rs`.
//! 2. cbindgen: the C view of `src/ffi.rs`. The committed `include/ox_push.h` must
//!    equal the generated one; the build fails when it is stale (run `make header`).
//! 3. cc: the C shim (`dovecot-plugin/ox-push-plugin.c`, the driver, and
//!    `ox-push-maildir-lock.c`), against Dovecot's headers.
//!
//! One environment variable says where Dovecot is: `DOVECOT_INCLUDE_DIR`
//! (default `/usr/include/dovecot`, Debian's `dovecot-dev`).

use std::env;
use std::fs;
use std::path::PathBuf;

const DEFAULT_INCLUDE_DIR: &str = "/usr/include/dovecot";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let include_dir = PathBuf::from(
        env::var("DOVECOT_INCLUDE_DIR").unwrap_or_else(|_| DEFAULT_INCLUDE_DIR.to_string()),
    );
    println!("cargo:rerun-if-env-changed=DOVECOT_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=OX_PUSH_UPDATE_HEADER");
    for input in [
        "dovecot-plugin/wrapper.h",
        "dovecot-plugin/ox-push-plugin.c",
        "dovecot-plugin/ox-push-maildir-lock.c",
        "dovecot-plugin/ox-push-maildir-lock.h",
        "cbindgen.toml",
        "src/ffi.rs",
        "src/module.rs",
        "src/log.rs",
    ] {
        println!("cargo:rerun-if-changed={input}");
    }
    let config_h = include_dir.join("config.h");
    println!("cargo:rerun-if-changed={}", config_h.display());
    if !config_h.exists() {
        panic!(
            "Dovecot headers not found: {} does not exist. Install Debian's dovecot-dev \
             or set DOVECOT_INCLUDE_DIR to the directory holding Dovecot's config.h.",
            config_h.display()
        );
    }

    // 1. bindgen: constants only, through an allowlist.
    let bindings = bindgen::Builder::default()
        .header(
            manifest_dir
                .join("dovecot-plugin/wrapper.h")
                .to_string_lossy(),
        )
        .clang_arg(format!("-I{}", include_dir.display()))
        .clang_arg("-DHAVE_CONFIG_H")
        .allowlist_var("DOVECOT_ABI_VERSION")
        .allowlist_type("push_notification_event_message_flags")
        .allowlist_type("mail_flags")
        .rustified_enum("push_notification_event_message_flags")
        .rustified_enum("mail_flags")
        .layout_tests(false)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen failed on dovecot-plugin/wrapper.h: {e}"));
    bindings
        .write_to_file(out_dir.join("dovecot_sys.rs"))
        .expect("write dovecot_sys.rs");

    // 2. cbindgen: regenerate and compare with the committed header.
    let generated = out_dir.join("ox_push.h");
    cbindgen::Builder::new()
        .with_crate(&manifest_dir)
        .with_config(
            cbindgen::Config::from_file(manifest_dir.join("cbindgen.toml"))
                .expect("read cbindgen.toml"),
        )
        .generate()
        .expect("cbindgen failed")
        .write_to_file(&generated);
    let committed = manifest_dir.join("include/ox_push.h");
    let new = fs::read(&generated).unwrap();
    let old = fs::read(&committed).unwrap_or_default();
    if new != old {
        if env::var_os("OX_PUSH_UPDATE_HEADER").is_some() {
            fs::write(&committed, &new).expect("write include/ox_push.h");
        } else {
            panic!(
                "include/ox_push.h is stale: it differs from what cbindgen generates from \
                 src/ffi.rs. Run `make header` and commit the result."
            );
        }
    }

    // 3. The C shim, with Dovecot's flags (from dovecot-config) and headers.
    let mut build = cc::Build::new();
    build
        .file("dovecot-plugin/ox-push-plugin.c")
        .file("dovecot-plugin/ox-push-maildir-lock.c")
        .include(&include_dir)
        .include(manifest_dir.join("include"))
        .define("HAVE_CONFIG_H", None)
        .flag_if_supported("-std=gnu99")
        .flag_if_supported("-Wmissing-prototypes")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-fvisibility=default")
        .warnings(true);
    build.compile("ox_push_shim");
    // Dovecot symbols resolve at dlopen time against the already loaded
    // process (RTLD_GLOBAL), as for every Dovecot plugin.
    println!("cargo:rustc-cdylib-link-arg=-Wl,--allow-shlib-undefined");
}
