/* ox_push: reading a driver entry's settings, per Dovecot version. */
#ifndef OX_PUSH_CONFIG_H
#define OX_PUSH_CONFIG_H

#include "ox_push.h"

struct mail_user;
struct event;
struct module;

/* The Rust instance for one driver entry of `user`, its log lines written
   with `event`. Dovecot 2.3: `entry` is the entry's raw config (the part of
   push_notification_driverN after "ox:"). Dovecot 2.4: `entry` is the name of
   its push_notification <name> { } block. Never NULL unless Rust panicked; a
   bad entry gives a disabled instance after one error line. */
OxPushInstance *ox_push_config_instance_new(struct mail_user *user,
					    struct event *event,
					    const char *entry);

/* Dovecot 2.4: says (once per process) when the 2.3 line
   push_notification_driver = ox:... is there, which 2.4 ignores. No-op on
   2.3. */
void ox_push_config_init(struct module *module);
void ox_push_config_deinit(void);

#endif
