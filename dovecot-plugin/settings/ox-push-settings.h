/* ox_push's own settings for Dovecot 2.4, read inside
   `push_notification <name> { }` blocks (or globally, as defaults for every
   block).

   Dovecot 2.4 rejects unknown keys, so the config process must know these:
   ox-push-settings-module.c exports this info from a settings module
   (libox_push_settings.so in $moduledir/settings/). The mail process does not
   load that module; it reads the values from the config binary with its own
   copy of the same info (this file and ox-push-settings.c compiled into the
   plugin). Both copies must have the same name and the same keys in the same
   order, or settings_get() fails with "settings struct ... key mismatch". */
#ifndef OX_PUSH_SETTINGS_H
#define OX_PUSH_SETTINGS_H

#include "settings-parser.h"

/* Full keys are push_notification_ox_push_<name>. Inside a
   `push_notification <block> { }` filter Dovecot also tries the key with the
   "push_notification_" prefix added, so operators write ox_push_<name> there,
   as they write ox_url for push_notification_ox_url. */
#define OX_PUSH_SETTINGS_PREFIX "push_notification_ox_push_"

/* The relay socket's name under base_dir, when relay_socket is "". */
#define OX_PUSH_RELAY_SOCKET_NAME "ox-push"
#define OX_PUSH_SHUTDOWN_TIMEOUT_MAX_MSECS (10 * 1000)

struct ox_push_settings {
	pool_t pool;

	/* "" = <base_dir>/ox-push */
	const char *relay_socket;
	/* seconds */
	unsigned int max_age;
	unsigned int shutdown_timeout_msecs;
	/* mailbox names, or the single entry "*" */
	ARRAY_TYPE(const_string) folders;
	/* messageNew, messageRead, messageTrash, messageExpunge, flagsSet,
	   flagsClear */
	ARRAY_TYPE(const_string) events;
	bool notification_id;
};

extern const struct setting_parser_info ox_push_setting_parser_info;

#endif
