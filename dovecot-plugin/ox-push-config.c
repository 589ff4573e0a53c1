/* ox_push: a driver entry's settings, read the way each Dovecot version
   keeps them, handed to Rust as plain values.

   Dovecot 2.3: the entry is one raw line (push_notification_driverN =
   ox:<key=value ...>), parsed in Rust exactly as the built-in driver does;
   the TLS settings come from mail_user_init_ssl_client_settings().

   Dovecot 2.4: the entry is a push_notification <name> { } block. The
   built-in driver's keys (ox_url, ox_user_from_metadata, ox_cache_ttl) are
   read with its own setting_parser_info, which the push_notification plugin
   exports; the HTTP client's and ssl_client_* keys of the block, as the
   built-in driver reads them; our own ox_push_* keys with our info
   (settings/ox-push-settings.c, the same file the settings module that
   registers them in the config process is built from). */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "mail-user.h"
#include "mail-storage-settings.h"
#include "mail-storage-hooks.h"

#include "push-notification-plugin.h"

#if DOVECOT_PREREQ(2, 4, 0)
#  include "settings.h"
#  include "ssl-settings.h"
#  include "http-client.h"
#  include "push-notification-settings.h"
#  include "ox-push-settings.h"
#else
#  include "iostream-ssl.h"
#endif

#include "ox-push-config.h"

/* Writes one log line for Rust (defined in ox-push-plugin.c). */
void ox_push_log_write(void *ctx, OxPushLogLevel level, const char *msg,
		       uintptr_t len);

static void
ox_push_config_user(struct mail_user *user, struct event *event,
		    OxPushUserSettings *set_r)
{
	i_zero(set_r);
	set_r->username = user->username;
	set_r->base_dir = user->set->base_dir;
	set_r->debug = event_want_debug(event);
	set_r->quiet = user->autocreated;
}

#if DOVECOT_PREREQ(2, 4, 0)

static unsigned int ox_push_list_count(const char *const *list)
{
	return list == NULL ? 0 : str_array_length(list);
}

OxPushInstance *ox_push_config_instance_new(struct mail_user *user,
					    struct event *event,
					    const char *name)
{
	const struct push_notification_ox_settings *ox_set = NULL;
	const struct ox_push_settings *set = NULL;
	const struct http_client_settings *http_set = NULL;
	const struct ssl_settings *ssl_set = NULL;
	struct settings_file ca;
	struct event *block_event;
	OxPushUserSettings user_set;
	OxPushBlockSettings block;
	OxPushInstance *inst = NULL;
	const char *error, *const *folders, *const *events;

	ox_push_config_user(user, event, &user_set);
	block_event = event_create(user->event);
	settings_event_add_list_filter_name(block_event, "push_notification",
					    name);
	if (settings_get_filter(user->event, "push_notification", name,
				&push_notification_ox_setting_parser_info, 0,
				&ox_set, &error) < 0 ||
	    settings_get(block_event, &ox_push_setting_parser_info, 0,
			 &set, &error) < 0 ||
	    settings_get(block_event, &http_client_setting_parser_info, 0,
			 &http_set, &error) < 0 ||
	    ssl_client_settings_get(block_event, &ssl_set, &error) < 0) {
		/* No instance: the driver never takes part. */
		if (!user->autocreated) {
			e_error(event, "push_notification %s { }: %s; this "
				"driver instance is disabled", name, error);
		}
	} else T_BEGIN {
		settings_file_get(ssl_set->ssl_client_ca_file,
				  unsafe_data_stack_pool, &ca);
		if (ca.path[0] == '\0' && ca.content[0] != '\0' &&
		    !user->autocreated) {
			e_error(event, "ssl_client_ca_file is given inline; the "
				"ox-push relay reads CA files by path: give a "
				"path (the system CAs are used meanwhile)");
		}
		user_set.ca_file = ca.path[0] == '\0' ? NULL : ca.path;
		user_set.ca_dir = ssl_set->ssl_client_ca_dir[0] == '\0' ? NULL :
			ssl_set->ssl_client_ca_dir;
		user_set.verify_cert = ssl_set->ssl_client_require_valid_cert;

		folders = array_is_created(&set->folders) ?
			settings_boollist_get(&set->folders) : NULL;
		events = array_is_created(&set->events) ?
			settings_boollist_get(&set->events) : NULL;
		i_zero(&block);
		block.name = name;
		block.url = ox_set->url;
		block.user_from_metadata = ox_set->user_from_metadata;
		block.cache_ttl_msecs = ox_set->cache_ttl;
		block.request_timeout_msecs = http_set->request_timeout_msecs;
		block.max_age_secs = set->max_age;
		block.shutdown_timeout_msecs = set->shutdown_timeout_msecs;
		block.folders = folders;
		block.folders_count = ox_push_list_count(folders);
		block.events = events;
		block.events_count = ox_push_list_count(events);
		block.notification_id = set->notification_id;
		block.relay_socket = set->relay_socket;
		inst = ox_push_instance_new_block(&block, &user_set,
						  ox_push_log_write, event);
	} T_END;
	settings_free(ssl_set);
	settings_free(http_set);
	settings_free(set);
	settings_free(ox_set);
	event_unref(&block_event);
	return inst;
}

static bool ox_push_config_legacy_reported = FALSE;

/* Dovecot 2.4 accepts the 2.3 line push_notification_driver = ox:url=...
   at the top level and does nothing with it: say so, without the value (it
   holds the password). */
static void ox_push_config_user_created(struct mail_user *user)
{
	const struct push_notification_settings *set;
	const char *error;

	if (ox_push_config_legacy_reported || user->autocreated)
		return;
	if (settings_get(user->event, &push_notification_setting_parser_info,
			 0, &set, &error) < 0)
		return;
	if (strchr(set->driver, ':') != NULL) {
		ox_push_config_legacy_reported = TRUE;
		e_error(user->event, "push-notification-ox: a top-level "
			"push_notification_driver = <driver>:<settings> line "
			"(Dovecot 2.3 syntax) does nothing in Dovecot 2.4: "
			"write push_notification ox { ox_url = ... } instead "
			"(see the ox_push documentation, PLUGIN.md)");
	}
	settings_free(set);
}

static struct mail_storage_hooks ox_push_config_hooks = {
	.mail_user_created = ox_push_config_user_created,
};

void ox_push_config_init(struct module *module)
{
	mail_storage_hooks_add(module, &ox_push_config_hooks);
}

void ox_push_config_deinit(void)
{
	mail_storage_hooks_remove(&ox_push_config_hooks);
}

#else /* Dovecot 2.3 */

OxPushInstance *ox_push_config_instance_new(struct mail_user *user,
					    struct event *event,
					    const char *raw_config)
{
	struct ssl_iostream_settings ssl_set;
	OxPushUserSettings user_set;

	ox_push_config_user(user, event, &user_set);
	user_set.debug = user_set.debug || user->mail_debug;
	mail_user_init_ssl_client_settings(user, &ssl_set);
	user_set.ca_file = ssl_set.ca_file;
	user_set.ca_dir = ssl_set.ca_dir;
	user_set.verify_cert = !ssl_set.allow_invalid_cert;
	return ox_push_instance_new(raw_config == NULL ? "" : raw_config,
				    &user_set, ox_push_log_write, event);
}

void ox_push_config_init(struct module *module ATTR_UNUSED)
{
}

void ox_push_config_deinit(void)
{
}

#endif
