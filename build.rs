//! Builds the Dovecot side of the plugin.
//!
//! 1. bindgen: the few Dovecot constants the Rust side uses (ABI string, event
//!    flag bits), from `dovecot-plugin/wrapper.h`, into `$OUT_DIR/dovecot_sys.rs`.
//! 2. cbindgen: the C view of `src/ffi.rs`. The committed `include/ox_push.h` must
//!    equal the generated one; the build fails when it is stale (run `make header`).
//! 3. cc: the C shim (`dovecot-plugin/ox-push-plugin.c`, the driver;
//!    `ox-push-config.c`, the settings; `ox-push-maildir-lock.c`), against
//!    Dovecot's headers; for Dovecot 2.4 also `settings/ox-push-settings.c`.
//!
//! Where Dovecot's headers are: `DOVECOT_INCLUDE_DIR`, or else the Dovecot
//! that `DOVECOT_CONFIG` (a `dovecot-config` file, possibly inside a root made
//! by `make dovecot-2.4`) describes, or else `/usr/include/dovecot` (Debian's
//! `dovecot-dev`). The headers' config.h says which Dovecot it is.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

const DEFAULT_INCLUDE_DIR: &str = "/usr/include/dovecot";

/// The include directory of the Dovecot a `dovecot-config` describes; a file
/// at `<root>/usr/lib/dovecot/dovecot-config` belongs to the Dovecot in `<root>`.
fn include_dir_of(config: &Path) -> PathBuf {
    let text = fs::read_to_string(config)
        .unwrap_or_else(|e| panic!("DOVECOT_CONFIG={}: {e}", config.display()));
    let dir = text
        .lines()
        .find_map(|l| l.strip_prefix("dovecot_pkgincludedir="))
        .unwrap_or(DEFAULT_INCLUDE_DIR)
        .trim_matches('"')
        .to_string();
    let config = config.to_string_lossy();
    let root = config
        .strip_suffix("/usr/lib/dovecot/dovecot-config")
        .unwrap_or("");
    PathBuf::from(format!("{root}{dir}"))
}

/// (major, minor) from config.h's DOVECOT_VERSION_MAJOR/MINOR.
fn version(config_h: &Path) -> (u32, u32) {
    let text = fs::read_to_string(config_h).unwrap_or_default();
    let get = |name: &str| -> u32 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (get("DOVECOT_VERSION_MAJOR"), get("DOVECOT_VERSION_MINOR"))
}

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let include_dir = match (
        env::var_os("DOVECOT_INCLUDE_DIR"),
        env::var_os("DOVECOT_CONFIG"),
    ) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(config)) => include_dir_of(Path::new(&config)),
        (None, None) => PathBuf::from(DEFAULT_INCLUDE_DIR),
    };
    println!("cargo:rerun-if-env-changed=DOVECOT_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=DOVECOT_CONFIG");
    println!("cargo:rerun-if-env-changed=OX_PUSH_UPDATE_HEADER");
    for input in [
        "dovecot-plugin/wrapper.h",
        "dovecot-plugin/ox-push-plugin.c",
        "dovecot-plugin/ox-push-config.c",
        "dovecot-plugin/ox-push-config.h",
        "dovecot-plugin/ox-push-maildir-lock.c",
        "dovecot-plugin/ox-push-maildir-lock.h",
        "dovecot-plugin/settings/ox-push-settings.c",
        "dovecot-plugin/settings/ox-push-settings.h",
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
            "Dovecot headers not found: {} does not exist. Install Debian's dovecot-dev, \
             or set DOVECOT_CONFIG to a Dovecot's dovecot-config, or DOVECOT_INCLUDE_DIR to \
             the directory holding its config.h.",
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
        .allowlist_var("DOVECOT_VERSION_MAJOR")
        .allowlist_var("DOVECOT_VERSION_MINOR")
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
    let dovecot_2_4 = version(&config_h) >= (2, 4);
    let mut build = cc::Build::new();
    build
        .file("dovecot-plugin/ox-push-plugin.c")
        .file("dovecot-plugin/ox-push-config.c")
        .file("dovecot-plugin/ox-push-maildir-lock.c")
        .include(&include_dir)
        .include(manifest_dir.join("include"))
        .define("HAVE_CONFIG_H", None)
        .flag_if_supported(if dovecot_2_4 {
            "-std=gnu11"
        } else {
            "-std=gnu99"
        })
        .flag_if_supported("-Wmissing-prototypes")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-fvisibility=default")
        .warnings(true);
    if dovecot_2_4 {
        // The info of our ox_push_* keys; the settings module is built from
        // the same file (dovecot-plugin/settings/build.sh).
        build
            .file("dovecot-plugin/settings/ox-push-settings.c")
            .include(manifest_dir.join("dovecot-plugin/settings"));
    }
    build.compile("ox_push_shim");
    // Dovecot symbols resolve at dlopen time against the already loaded
    // process (RTLD_GLOBAL), as for every Dovecot plugin.
    println!("cargo:rustc-cdylib-link-arg=-Wl,--allow-shlib-undefined");
}
