/* What bindgen reads: the Dovecot values the Rust side relies on
   (DOVECOT_ABI_VERSION from config.h, the push-notification message flag
   bits, and enum mail_flags). build.rs allowlists exactly these. */
#include "lib.h"
#include "mail-types.h"
#include "push-notification-event-message-common.h"
