//! The Dovecot module contract of `lib30_ox_push_plugin.so` (module `ox_push`):
//! `ox_push_plugin_init`, `_deinit`, `_version` and `_dependencies`. They are
//! defined here because a Rust cdylib exports only Rust symbols; init and deinit
//! call the shim's `ox_push_shim_init`/`_deinit` under the panic guard.

use std::ffi::{c_char, c_void};

use crate::ffi::{guard, install_panic_hook};

/// A pointer that may live in a `static` (it points at immutable data).
#[repr(transparent)]
pub struct StaticPtr(*const c_char);
// SAFETY: the pointees are immutable 'static C strings.
unsafe impl Sync for StaticPtr {}

/// `ox_push_plugin_version`: the `DOVECOT_ABI_VERSION` of the headers this was
/// built against, so that Dovecot refuses a mismatched build with its own message.
#[no_mangle]
pub static ox_push_plugin_version: StaticPtr = StaticPtr(crate::sys::ABI_VERSION.as_ptr());

/// `ox_push_plugin_dependencies`: `push_notification` must be loaded first.
#[no_mangle]
pub static ox_push_plugin_dependencies: [StaticPtr; 2] = [
    StaticPtr(c"push_notification".as_ptr()),
    StaticPtr(std::ptr::null()),
];

extern "C" {
    fn ox_push_shim_init(module: *mut c_void);
    fn ox_push_shim_deinit();
}

/// Module init: takes over the `ox` driver name (see the shim).
///
/// # Safety
/// Called by Dovecot's module loader only.
#[no_mangle]
pub unsafe extern "C" fn ox_push_plugin_init(module: *mut c_void) {
    install_panic_hook();
    // SAFETY: the shim's init follows Dovecot's plugin contract.
    guard("ox_push_plugin_init", None, (), || unsafe {
        ox_push_shim_init(module)
    })
}

/// Module deinit: stops the senders (bounded) and gives `ox` back to the
/// built-in driver, so that the core plugin's own deinit stays consistent.
///
/// # Safety
/// Called by Dovecot's module loader only.
#[no_mangle]
pub unsafe extern "C" fn ox_push_plugin_deinit() {
    // SAFETY: the shim's deinit follows Dovecot's plugin contract.
    guard("ox_push_plugin_deinit", None, (), || unsafe {
        ox_push_shim_deinit()
    })
}
