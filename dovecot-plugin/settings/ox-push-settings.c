/* The setting_parser_info of ox_push's keys (see ox-push-settings.h). Only
   libdovecot is used here: the config process that loads the settings module
   has no lib-storage and no push_notification plugin. */

#include "lib.h"
#include "array.h"
#include "settings-parser.h"

#include "ox-push-settings.h"

static bool ox_push_settings_check(void *set, pool_t pool, const char **error_r);

#undef DEF
#define DEF(type, name) \
	SETTING_DEFINE_STRUCT_##type(OX_PUSH_SETTINGS_PREFIX #name, name, \
				     struct ox_push_settings)

static const struct setting_define ox_push_setting_defines[] = {
	DEF(STR, relay_socket),
	DEF(TIME, max_age),
	SETTING_DEFINE_STRUCT_TIME_MSECS(OX_PUSH_SETTINGS_PREFIX "shutdown_timeout",
					 shutdown_timeout_msecs,
					 struct ox_push_settings),
	DEF(BOOLLIST, folders),
	DEF(BOOLLIST, events),
	DEF(BOOL, notification_id),

	SETTING_DEFINE_LIST_END
};

static const struct ox_push_settings ox_push_default_settings = {
	.relay_socket = "",
	.max_age = 10 * 60,
	.shutdown_timeout_msecs = 100,
	.folders = ARRAY_INIT,
	.events = ARRAY_INIT,
	.notification_id = FALSE,
};

/* Lists get their defaults as strings, like auth_mechanisms does. */
static const struct setting_keyvalue ox_push_default_settings_keyvalue[] = {
	{ OX_PUSH_SETTINGS_PREFIX "folders", "INBOX" },
	{ OX_PUSH_SETTINGS_PREFIX "events", "messageNew" },
	{ NULL, NULL }
};

const struct setting_parser_info ox_push_setting_parser_info = {
	.name = "push_notification_ox_push",

	.defines = ox_push_setting_defines,
	.defaults = &ox_push_default_settings,
	.default_settings = ox_push_default_settings_keyvalue,

	.struct_size = sizeof(struct ox_push_settings),
	.pool_offset1 = 1 + offsetof(struct ox_push_settings, pool),
	.check_func = ox_push_settings_check,
};

static const char *const ox_push_event_names[] = {
	"messageNew", "messageRead", "messageTrash", "messageExpunge",
	"flagsSet", "flagsClear", NULL
};

static bool ox_push_settings_check_events(const struct ox_push_settings *set,
					  const char **error_r)
{
	const char *name;

	if (!array_is_created(&set->events))
		return TRUE;
	array_foreach_elem(&set->events, name) {
		if (!str_array_find(ox_push_event_names, name)) {
			*error_r = t_strdup_printf(
				"Invalid " OX_PUSH_SETTINGS_PREFIX "events: "
				"unknown event '%s' (known: %s)", name,
				t_strarray_join(ox_push_event_names, ", "));
			return FALSE;
		}
	}
	return TRUE;
}

static bool ox_push_settings_check_folders(const struct ox_push_settings *set,
					   const char **error_r)
{
	const char *name;

	if (!array_is_created(&set->folders))
		return TRUE;
	array_foreach_elem(&set->folders, name) {
		if (name[0] == '\0') {
			*error_r = "Invalid " OX_PUSH_SETTINGS_PREFIX "folders: "
				"empty mailbox name";
			return FALSE;
		}
		if (strcmp(name, "*") == 0 && array_count(&set->folders) > 1) {
			*error_r = "Invalid " OX_PUSH_SETTINGS_PREFIX "folders: "
				"'*' (all mailboxes) cannot be combined with names";
			return FALSE;
		}
	}
	return TRUE;
}

static bool ox_push_settings_check(void *_set, pool_t pool ATTR_UNUSED,
				   const char **error_r)
{
	struct ox_push_settings *set = _set;

	if (set->max_age == 0) {
		*error_r = OX_PUSH_SETTINGS_PREFIX "max_age must not be 0";
		return FALSE;
	}
	if (set->shutdown_timeout_msecs > OX_PUSH_SHUTDOWN_TIMEOUT_MAX_MSECS) {
		*error_r = t_strdup_printf(
			OX_PUSH_SETTINGS_PREFIX "shutdown_timeout is %u ms, "
			"more than the maximum of %u ms: an exiting mail "
			"process waits this long for the relay",
			set->shutdown_timeout_msecs,
			OX_PUSH_SHUTDOWN_TIMEOUT_MAX_MSECS);
		return FALSE;
	}
	if (set->relay_socket[0] != '\0' && set->relay_socket[0] != '/' &&
	    set->relay_socket != set_value_unknown) {
		*error_r = t_strdup_printf(
			"Invalid " OX_PUSH_SETTINGS_PREFIX "relay_socket '%s': "
			"must be an absolute path (or empty for "
			"<base_dir>/" OX_PUSH_RELAY_SOCKET_NAME ")",
			set->relay_socket);
		return FALSE;
	}
	return ox_push_settings_check_events(set, error_r) &&
		ox_push_settings_check_folders(set, error_r);
}
