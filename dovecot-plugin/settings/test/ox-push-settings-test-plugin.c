/* lib99_ox_push_settings_test_plugin.so: proves how a Dovecot 2.4 mail
   process reads ox_push's keys for each `push_notification <name> { }` block,
   next to what the built-in ox driver reads there (its own keys, the HTTP
   client's and the ssl_client_* settings). At every mail user's creation it
   logs one info line per block; scripts/dovecot-2.4-settings-test.sh checks
   them. Not shipped. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "settings.h"
#include "settings-parser.h"
#include "ssl-settings.h"
#include "http-client.h"
#include "mail-user.h"
#include "mail-storage-hooks.h"
#include "push-notification-settings.h"

#include "ox-push-settings.h"

#define TEST_LOG_PREFIX "ox-push-settings-test: "

extern const char *ox_push_settings_test_plugin_version;
extern const char *ox_push_settings_test_plugin_dependencies[];
void ox_push_settings_test_plugin_init(struct module *module);
void ox_push_settings_test_plugin_deinit(void);

const char *ox_push_settings_test_plugin_version = DOVECOT_ABI_VERSION;
const char *ox_push_settings_test_plugin_dependencies[] = {
	"push_notification", NULL
};

static const char *test_list(const ARRAY_TYPE(const_string) *list)
{
	if (!array_is_created(list) || array_is_empty(list))
		return "(none)";
	return t_strarray_join(settings_boollist_get(list), ",");
}

/* settings_get_filter() finds a block only for an info that has keys set in
   it: for ox_push's optional keys it fails ("Filter push_notification=<name>
   unexpectedly not found") in a block that sets none of them. */
static void test_log_try_filter(struct mail_user *user, const char *name)
{
	const struct ox_push_settings *set;
	const char *error;
	int ret;

	ret = settings_try_get_filter(user->event, "push_notification", name,
				      &ox_push_setting_parser_info, 0,
				      &set, &error);
	if (ret > 0)
		settings_free(set);
	e_info(user->event, TEST_LOG_PREFIX "%s: settings_try_get_filter(ox_push) = %d%s%s",
	       name, ret, ret < 0 ? ": " : "", ret < 0 ? error : "");
}

/* ox_push's keys: settings_get() on an event carrying the block's list
   filter name. Works whether or not the block sets any of them. */
static void test_log_ox_push(struct mail_user *user, struct event *event,
			     const char *name)
{
	const struct ox_push_settings *set;
	const char *error, *socket;

	if (settings_get(event, &ox_push_setting_parser_info, 0,
			 &set, &error) < 0) {
		e_error(user->event, TEST_LOG_PREFIX "%s: %s", name, error);
		return;
	}
	socket = set->relay_socket[0] != '\0' ? set->relay_socket :
		t_strconcat(user->set->base_dir, "/",
			    OX_PUSH_RELAY_SOCKET_NAME, NULL);
	e_info(user->event, TEST_LOG_PREFIX "%s: ox_push_relay_socket=%s "
	       "ox_push_max_age=%us ox_push_shutdown_timeout=%ums "
	       "ox_push_folders=%s ox_push_events=%s "
	       "ox_push_notification_id=%s",
	       name, socket, set->max_age, set->shutdown_timeout_msecs,
	       test_list(&set->folders), test_list(&set->events),
	       set->notification_id ? "yes" : "no");
	settings_free(set);
}

/* What the built-in 2.4.1 ox driver reads: its own keys with
   settings_get_filter(), the HTTP client's and the ssl_client_* settings
   with settings_get()/ssl_client_settings_get() on the filtered event. */
static void test_log_builtin(struct mail_user *user, struct event *event,
			     const char *name)
{
	const struct push_notification_ox_settings *ox_set;
	const struct http_client_settings *http_set;
	const struct ssl_settings *ssl_set;
	struct settings_file ca;
	const char *error;

	if (settings_get_filter(user->event, "push_notification", name,
				&push_notification_ox_setting_parser_info, 0,
				&ox_set, &error) < 0) {
		e_error(user->event, TEST_LOG_PREFIX "%s: ox: %s", name, error);
		return;
	}
	if (settings_get(event, &http_client_setting_parser_info, 0,
			 &http_set, &error) < 0) {
		e_error(user->event, TEST_LOG_PREFIX "%s: http: %s", name, error);
		settings_free(ox_set);
		return;
	}
	if (ssl_client_settings_get(event, &ssl_set, &error) < 0) {
		e_error(user->event, TEST_LOG_PREFIX "%s: ssl: %s", name, error);
		settings_free(http_set);
		settings_free(ox_set);
		return;
	}
	settings_file_get(ssl_set->ssl_client_ca_file, unsafe_data_stack_pool, &ca);
	e_info(user->event, TEST_LOG_PREFIX "%s: ox_url=%s ox_cache_ttl=%ums "
	       "ox_user_from_metadata=%s http_client_request_timeout=%ums "
	       "http_client_request_max_attempts=%u ssl_client_ca_file=%s "
	       "(%zu bytes of PEM) ssl_client_ca_dir=%s "
	       "ssl_client_require_valid_cert=%s",
	       name, ox_set->url, ox_set->cache_ttl,
	       ox_set->user_from_metadata ? "yes" : "no",
	       http_set->request_timeout_msecs, http_set->request_max_attempts,
	       ca.path[0] == '\0' ? "(none)" : ca.path, strlen(ca.content),
	       ssl_set->ssl_client_ca_dir,
	       ssl_set->ssl_client_require_valid_cert ? "yes" : "no");
	settings_free(ssl_set);
	settings_free(http_set);
	settings_free(ox_set);
}

static void test_mail_user_created(struct mail_user *user)
{
	const struct push_notification_settings *set;
	const char *error, *name;

	if (settings_get(user->event, &push_notification_setting_parser_info, 0,
			 &set, &error) < 0) {
		e_error(user->event, TEST_LOG_PREFIX "%s", error);
		return;
	}
	e_info(user->event, TEST_LOG_PREFIX "user %s, base_dir %s, debug %s",
	       user->username, user->set->base_dir,
	       event_want_debug(user->event) ? "yes" : "no");
	if (array_is_created(&set->push_notifications)) {
		array_foreach_elem(&set->push_notifications, name) T_BEGIN {
			struct event *event = event_create(user->event);

			settings_event_add_list_filter_name(
				event, "push_notification", name);
			test_log_ox_push(user, event, name);
			test_log_try_filter(user, name);
			test_log_builtin(user, event, name);
			event_unref(&event);
		} T_END;
	}
	settings_free(set);
}

static struct mail_storage_hooks test_hooks = {
	.mail_user_created = test_mail_user_created,
};

void ox_push_settings_test_plugin_init(struct module *module)
{
	mail_storage_hooks_add(module, &test_hooks);
}

void ox_push_settings_test_plugin_deinit(void)
{
	mail_storage_hooks_remove(&test_hooks);
}
