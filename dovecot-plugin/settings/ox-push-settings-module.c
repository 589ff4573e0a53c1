/* libox_push_settings.so: the settings module that teaches Dovecot 2.4's
   config process (the config service and doveconf) ox_push's keys.

   Installed as $moduledir/settings/libox_push_settings.so; Dovecot loads every
   .so there, names the module after the file (lib and .so stripped:
   "ox_push_settings"), refuses it unless <module>_version equals its own
   DOVECOT_ABI_VERSION, and adds the NULL-terminated <module>_set_infos. */

#include "lib.h"
#include "settings-parser.h"

#include "ox-push-settings.h"

extern const char *ox_push_settings_version;
extern const struct setting_parser_info *ox_push_settings_set_infos[];

const char *ox_push_settings_version = DOVECOT_ABI_VERSION;

const struct setting_parser_info *ox_push_settings_set_infos[] = {
	&ox_push_setting_parser_info,
	NULL
};
