/* ox_push: takes over Dovecot's push_notification "ox" driver.

   This file (with ox-push-maildir-lock.c) is the only code that calls
   Dovecot. It reads what the Rust half (include/ox_push.h) needs -- user name,
   base_dir, SSL client settings, the METADATA entry, mailbox status, event
   data -- and hands it over as plain bytes. It writes Dovecot's log for Rust,
   and it lends Rust's relay client the ioloop: an io on the client's epoll
   descriptor and one timeout. Everything else (config, JSON, handing the
   notification to the ox-push relay) is Rust. */

#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "str.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage-private.h"
#include "mailbox-attribute.h"

#include "push-notification-plugin.h"
#include "push-notification-drivers.h"
#include "push-notification-events.h"
#include "push-notification-event-messagenew.h"
#include "push-notification-event-flagsset.h"
#include "push-notification-event-flagsclear.h"
#include "push-notification-txn-msg.h"

#include "ox_push.h"
#include "ox-push-config.h"
#include "ox-push-maildir-lock.h"

#if DOVECOT_PREREQ(2, 4, 0)
/* 2.4 hands event_init the driver's event (for its log lines). */
#  define OX_PUSH_EVENT_INIT(dtxn, name, config, ouser) \
	push_notification_event_init(dtxn, name, config, (ouser)->event)
#else
#  define OX_PUSH_EVENT_INIT(dtxn, name, config, ouser) \
	push_notification_event_init(dtxn, name, config)
#endif

#define OX_PUSH_LOG_PREFIX "push-notification-ox: "
#define OX_PUSH_METADATA_KEY \
	MAILBOX_ATTRIBUTE_PREFIX_DOVECOT_PVT_SERVER \
	"vendor/vendor.dovecot/http-notify"

/* The built-in driver, exported by lib20_push_notification_plugin.so. */
extern struct push_notification_driver push_notification_driver_ox;

/* The module's exported symbols (ox_push_plugin_init, _deinit, _version,
   _dependencies) are defined in src/ffi.rs, because a Rust cdylib exports only
   Rust symbols; they call ox_push_shim_init() and ox_push_shim_deinit()
   (declared in ox_push.h). */

/* Per mail user and driver instance. */
struct ox_push_user {
	struct event *event;
	OxPushInstance *inst;
};

/* Per push transaction: the METADATA user= value it runs with. */
struct ox_push_txn {
	const unsigned char *user;
	size_t user_len;
};

static struct event *ox_push_event;
/* The relay client: runs when its epoll descriptor is readable or its timer
   fires, always on the ioloop that was current when the plugin was loaded. */
static struct ioloop *ox_push_ioloop;
static struct io *ox_push_client_io;
static struct timeout *ox_push_client_to;

static OxPushBytes ox_push_bytes(const char *str)
{
	OxPushBytes b = { (const uint8_t *)str, str == NULL ? 0 : strlen(str) };
	return b;
}

void ox_push_log_write(void *ctx, OxPushLogLevel level, const char *msg,
		       uintptr_t len);

void ox_push_log_write(void *ctx, OxPushLogLevel level, const char *msg,
		       uintptr_t len)
{
	struct event *event = ctx;

	T_BEGIN {
		const char *line = t_strndup(msg, len);

		switch (level) {
		case OX_PUSH_LOG_LEVEL_DEBUG:
			e_debug(event, "%s", line);
			break;
		case OX_PUSH_LOG_LEVEL_INFO:
			e_info(event, "%s", line);
			break;
		case OX_PUSH_LOG_LEVEL_WARNING:
			e_warning(event, "%s", line);
			break;
		default:
			e_error(event, "%s", line);
			break;
		}
	} T_END;
}

static void ox_push_log_flush(void)
{
	ox_push_log_drain(ox_push_log_write, ox_push_event);
}

static void ox_push_client_wakeup(void *context ATTR_UNUSED);

/* (Re)arms the relay client's timer: msecs from now, or none for -1 (the
   timer only runs while the client waits to reconnect). */
static void ox_push_client_schedule(int64_t msecs)
{
	timeout_remove(&ox_push_client_to);
	if (msecs < 0 || ox_push_ioloop == NULL)
		return;
	if (msecs > 24 * 3600 * 1000)
		msecs = 24 * 3600 * 1000;
	ox_push_client_to = timeout_add_to(ox_push_ioloop, (unsigned int)msecs,
					   ox_push_client_wakeup, NULL);
}

static void ox_push_client_wakeup(void *context ATTR_UNUSED)
{
	ox_push_client_schedule(ox_push_client_run());
	ox_push_log_flush();
}

static struct ox_push_user *ox_push_user_new(struct mail_user *user, pool_t pool)
{
	struct ox_push_user *ouser;

	ouser = p_new(pool, struct ox_push_user, 1);
	ouser->event = event_create(user->event);
	event_add_category(ouser->event, &event_category_push_notification);
	event_set_append_log_prefix(ouser->event, OX_PUSH_LOG_PREFIX);
	if (event_want_debug(ouser->event)) {
		/* The relay client's debug lines are written with the
		   process-wide event: let them through when any user asked for
		   debug. */
		event_set_forced_debug(ox_push_event, TRUE);
	}
	return ouser;
}

/* Never fails: a broken entry disables only this instance, and the entries
   after it keep working. */
#if DOVECOT_PREREQ(2, 4, 0)
static int
ox_push_driver_init(struct mail_user *user, pool_t pool, const char *name,
		    void **context, const char **error_r ATTR_UNUSED)
{
	struct ox_push_user *ouser = ox_push_user_new(user, pool);

	ouser->inst = ox_push_config_instance_new(user, ouser->event, name);
	ox_push_log_flush();
	*context = ouser;
	return 0;
}
#else
static int
ox_push_driver_init(struct push_notification_driver_config *config,
		    struct mail_user *user, pool_t pool, void **context,
		    const char **error_r ATTR_UNUSED)
{
	struct ox_push_user *ouser = ox_push_user_new(user, pool);

	if (user->mail_debug)
		event_set_forced_debug(ox_push_event, TRUE);
	ouser->inst = ox_push_config_instance_new(user, ouser->event,
						  config->raw_config);
	ox_push_log_flush();
	*context = ouser;
	return 0;
}
#endif

static void
ox_push_metadata_lookup(struct push_notification_driver_txn *dtxn,
			struct ox_push_user *ouser)
{
	struct push_notification_txn *ptxn = dtxn->ptxn;
	struct mail_attribute_value attr;
	struct mail_namespace *ns;
	struct mailbox *inbox;
	bool own_box = FALSE;
	int ret;

	/* Server METADATA lives on the user's INBOX (see imap's GETMETADATA). */
	if (ptxn->t != NULL && ptxn->mbox->inbox_user) {
		inbox = ptxn->mbox;
	} else {
		ns = mail_namespace_find_inbox(ptxn->muser->namespaces);
		inbox = mailbox_alloc(ns->list, "INBOX", MAILBOX_FLAG_READONLY);
		own_box = TRUE;
	}
	i_zero(&attr);
	ret = mailbox_attribute_get(inbox, MAIL_ATTRIBUTE_TYPE_PRIVATE,
				    OX_PUSH_METADATA_KEY, &attr);
	if (ret < 0) {
		ox_push_instance_set_lookup(ouser->inst, ioloop_time,
			OX_PUSH_LOOKUP_STATUS_ERROR,
			ox_push_bytes(mailbox_get_last_internal_error(inbox, NULL)));
	} else if (ret == 0) {
		ox_push_instance_set_lookup(ouser->inst, ioloop_time,
			OX_PUSH_LOOKUP_STATUS_NOT_FOUND, ox_push_bytes(NULL));
	} else {
		ox_push_instance_set_lookup(ouser->inst, ioloop_time,
			OX_PUSH_LOOKUP_STATUS_FOUND,
			ox_push_bytes(attr.value == NULL ? "" : attr.value));
	}
	if (own_box)
		mailbox_free(&inbox);
}

static void
ox_push_events_subscribe(struct push_notification_driver_txn *dtxn,
			 struct ox_push_user *ouser)
{
	pool_t pool = dtxn->ptxn->pool;
	uint32_t events = ox_push_instance_events(ouser->inst);

	if ((events & OX_PUSH_EVENT_MESSAGE_NEW) != 0) {
		struct push_notification_event_messagenew_config *config;

		config = p_new(pool, struct push_notification_event_messagenew_config, 1);
		config->flags = ox_push_messagenew_flags();
		OX_PUSH_EVENT_INIT(dtxn, "MessageNew", config, ouser);
		e_debug(ouser->event, "Handling MessageNew event");
	}
	if ((events & OX_PUSH_EVENT_MESSAGE_READ) != 0)
		OX_PUSH_EVENT_INIT(dtxn, "MessageRead", NULL, ouser);
	if ((events & OX_PUSH_EVENT_MESSAGE_TRASH) != 0)
		OX_PUSH_EVENT_INIT(dtxn, "MessageTrash", NULL, ouser);
	if ((events & OX_PUSH_EVENT_MESSAGE_EXPUNGE) != 0)
		OX_PUSH_EVENT_INIT(dtxn, "MessageExpunge", NULL, ouser);
	if ((events & OX_PUSH_EVENT_FLAGS_SET) != 0) {
		struct push_notification_event_flagsset_config *config;

		config = p_new(pool, struct push_notification_event_flagsset_config, 1);
		OX_PUSH_EVENT_INIT(dtxn, "FlagsSet", config, ouser);
	}
	if ((events & OX_PUSH_EVENT_FLAGS_CLEAR) != 0) {
		struct push_notification_event_flagsclear_config *config;

		config = p_new(pool, struct push_notification_event_flagsclear_config, 1);
		OX_PUSH_EVENT_INIT(dtxn, "FlagsClear", config, ouser);
	}
}

static bool ox_push_driver_begin_txn(struct push_notification_driver_txn *dtxn)
{
	struct ox_push_user *ouser = dtxn->duser->context;
	const char *vname = mailbox_get_vname(dtxn->ptxn->mbox);
	const uint8_t *user;
	uintptr_t user_len;
	struct ox_push_txn *otxn;

	if (ouser == NULL || !ox_push_instance_enabled(ouser->inst))
		return FALSE;
	/* Unlike the built-in driver, filter by mailbox before reading
	   METADATA: no dict lookup for transactions that cannot notify. */
	if (!ox_push_instance_watches(ouser->inst, ox_push_bytes(vname))) {
		e_debug(ouser->event,
			"Skipped because %s is not a watched mailbox", vname);
		return FALSE;
	}
	if (ox_push_instance_needs_lookup(ouser->inst, ioloop_time))
		ox_push_metadata_lookup(dtxn, ouser);
	if (ox_push_instance_begin_txn(ouser->inst, &user, &user_len) !=
	    OX_PUSH_RESULT_OK)
		return FALSE;

	/* Deliveries (LDA, LMTP, Sieve) do not ask for UIDs at commit, and
	   maildir then only *tries* to lock dovecot-uidlist: under concurrent
	   deliveries the commit gets no UIDs and the built-in driver sends
	   "imap-uid":0. Ask for them, as the mail_log plugin does. Without
	   contention this is the path maildir takes anyway; dbox always
	   assigns UIDs. Only here: the transaction is freed by process_msg. */
	if (dtxn->ptxn->t != NULL &&
	    (dtxn->ptxn->mbox->flags & MAILBOX_FLAG_POST_SESSION) != 0)
		dtxn->ptxn->t->flags |= MAILBOX_TRANSACTION_FLAG_ASSIGN_UIDS;

	otxn = p_new(dtxn->ptxn->pool, struct ox_push_txn, 1);
	otxn->user = p_memdup(dtxn->ptxn->pool, user, user_len);
	otxn->user_len = user_len;
	ox_push_events_subscribe(dtxn, ouser);
	dtxn->context = otxn;
	return TRUE;
}

/* UNSEEN after the commit, from a fresh view of the mailbox index. The
   transaction's own mailbox cannot be used (its view predates the commit).
   The built-in driver runs a full mailbox_sync() here, which on maildir
   rescans new/ and cur/ for every delivery; the committed index already
   holds this and every other committed delivery (begin_txn makes deliveries
   assign UIDs, i.e. update the index, at commit), so opening it suffices.
   Flag changes and expunges (opt-in events, not on the delivery path) still
   sync: on maildir an expunge reaches the index only through a sync. */
static bool
ox_push_get_unseen(struct push_notification_driver_txn *dtxn,
		   struct ox_push_user *ouser, bool sync, uint32_t *unseen_r)
{
	struct mailbox *mbox = dtxn->ptxn->mbox;
	struct mailbox_status status;
	struct mailbox *box;
	bool ret = FALSE;

	box = mailbox_alloc(mailbox_get_namespace(mbox)->list,
			    mailbox_get_name(mbox), MAILBOX_FLAG_READONLY);
	if ((sync ? mailbox_sync(box, 0) : mailbox_open(box)) < 0) {
		e_error(ouser->event, "%s(%s) failed: %s",
			sync ? "mailbox_sync" : "mailbox_open",
			mailbox_get_vname(mbox),
			mailbox_get_last_internal_error(box, NULL));
	} else {
		mailbox_get_open_status(box, STATUS_UNSEEN, &status);
		e_debug(ouser->event, "Got status of mailbox '%s': (unseen: %u)",
			mailbox_get_vname(box), status.unseen);
		*unseen_r = status.unseen;
		ret = TRUE;
	}
	mailbox_free(&box);
	return ret;
}

static void
ox_push_flag_names(pool_t pool, enum mail_flags flags,
		   const ARRAY_TYPE(keywords) *keywords,
		   OxPushNotification *n)
{
	static const struct { enum mail_flags flag; const char *name; } names[] = {
		{ MAIL_ANSWERED, "\\Answered" }, { MAIL_FLAGGED, "\\Flagged" },
		{ MAIL_DELETED, "\\Deleted" }, { MAIL_SEEN, "\\Seen" },
		{ MAIL_DRAFT, "\\Draft" },
	};
	OxPushBytes *fl = p_new(pool, OxPushBytes, N_ELEMENTS(names));
	OxPushBytes *kw = NULL;
	unsigned int i, count = 0;
	const char *const *kws;

	for (i = 0; i < N_ELEMENTS(names); i++) {
		if ((flags & names[i].flag) != 0)
			fl[count++] = ox_push_bytes(names[i].name);
	}
	n->flags = fl;
	n->flags_count = count;
	if (keywords != NULL && array_is_created(keywords)) {
		kws = array_get(keywords, &count);
		kw = p_new(pool, OxPushBytes, count + 1);
		for (i = 0; i < count; i++)
			kw[i] = ox_push_bytes(kws[i]);
		n->keywords = kw;
		n->keywords_count = count;
	}
}

static void
ox_push_driver_process_msg(struct push_notification_driver_txn *dtxn,
			   struct push_notification_txn_msg *msg)
{
	struct ox_push_user *ouser = dtxn->duser->context;
	struct ox_push_txn *otxn = dtxn->context;
	uint32_t events, unseen = 0;
	int64_t next_msecs = -1;
	bool have_unseen = FALSE, status_done = FALSE, submitted = FALSE;
	static const struct { uint32_t bit; const char *name; } kinds[] = {
		{ OX_PUSH_EVENT_MESSAGE_NEW, "MessageNew" },
		{ OX_PUSH_EVENT_MESSAGE_READ, "MessageRead" },
		{ OX_PUSH_EVENT_MESSAGE_TRASH, "MessageTrash" },
		{ OX_PUSH_EVENT_MESSAGE_EXPUNGE, "MessageExpunge" },
		{ OX_PUSH_EVENT_FLAGS_SET, "FlagsSet" },
		{ OX_PUSH_EVENT_FLAGS_CLEAR, "FlagsClear" },
	};
	unsigned int i;

	if (ouser == NULL || otxn == NULL)
		return;
	events = ox_push_instance_events(ouser->inst);
	for (i = 0; i < N_ELEMENTS(kinds); i++) {
		OxPushNotification n;
		void *data;

		if ((events & kinds[i].bit) == 0)
			continue;
		data = push_notification_txn_msg_get_eventdata(msg, kinds[i].name);
		if (data == NULL)
			continue;
		/* Sync for UNSEEN only when something is really sent, once per
		   message (the built-in driver syncs for every message). */
		if (!status_done) {
			have_unseen = ox_push_get_unseen(dtxn, ouser,
				kinds[i].bit != OX_PUSH_EVENT_MESSAGE_NEW, &unseen);
			status_done = TRUE;
		}
		i_zero(&n);
		n.event = kinds[i].bit;
		n.metadata_user.ptr = otxn->user;
		n.metadata_user.len = otxn->user_len;
		n.folder = ox_push_bytes(msg->mailbox);
		n.uid_validity = msg->uid_validity;
		n.uid = msg->uid;
		n.has_unseen = have_unseen;
		n.unseen = unseen;
		if (kinds[i].bit == OX_PUSH_EVENT_MESSAGE_NEW) {
			struct push_notification_event_messagenew_data *mn = data;

			n.from = ox_push_bytes(mn->from);
			n.subject = ox_push_bytes(mn->subject);
			n.snippet = ox_push_bytes(mn->snippet);
		} else if (kinds[i].bit == OX_PUSH_EVENT_FLAGS_SET) {
			struct push_notification_event_flagsset_data *fs = data;

			ox_push_flag_names(dtxn->ptxn->pool, fs->flags_set,
					   &fs->keywords_set, &n);
		} else if (kinds[i].bit == OX_PUSH_EVENT_FLAGS_CLEAR) {
			struct push_notification_event_flagsclear_data *fc = data;

			ox_push_flag_names(dtxn->ptxn->pool, fc->flags_clear,
					   &fc->keywords_clear, &n);
		}
		if ((kinds[i].bit == OX_PUSH_EVENT_FLAGS_SET ||
		     kinds[i].bit == OX_PUSH_EVENT_FLAGS_CLEAR) &&
		    n.flags_count == 0 && n.keywords_count == 0) {
			/* The framework creates both flag events for any
			   change; an empty one says nothing. */
			continue;
		}
		/* Written to the relay socket already when it takes it; the
		   acknowledgement arrives through the io, a reconnect needs
		   the timer. */
		(void)ox_push_instance_submit(ouser->inst, &n, &next_msecs);
		submitted = TRUE;
	}
	if (submitted)
		ox_push_client_schedule(next_msecs);
	ox_push_log_flush();
}

static void ox_push_driver_deinit(struct push_notification_driver_user *duser)
{
	struct ox_push_user *ouser = duser->context;

	if (ouser == NULL)
		return;
	/* Never waits: what the relay has not taken yet stays in the
	   process's queue. */
	ox_push_instance_free(ouser->inst);
	ouser->inst = NULL;
	event_unref(&ouser->event);
}

static void ox_push_driver_cleanup(void)
{
	ox_push_log_flush();
}

static const struct push_notification_driver ox_push_driver = {
	.name = "ox",
	.v = {
		.init = ox_push_driver_init,
		.begin_txn = ox_push_driver_begin_txn,
		.process_msg = ox_push_driver_process_msg,
		.deinit = ox_push_driver_deinit,
		.cleanup = ox_push_driver_cleanup,
	},
};

void ox_push_shim_init(void *module)
{
	int fd;

	ox_push_event = event_create(NULL);
	event_add_category(ox_push_event, &event_category_push_notification);
	event_set_append_log_prefix(ox_push_event, OX_PUSH_LOG_PREFIX);

	push_notification_driver_unregister(&push_notification_driver_ox);
	push_notification_driver_register(&ox_push_driver);
	ox_push_maildir_lock_init(module);
	ox_push_config_init(module);

	if (current_ioloop == NULL)
		return;
	ox_push_ioloop = current_ioloop;
	fd = ox_push_client_fd();
	if (fd >= 0) {
		ox_push_client_io = io_add_to(ox_push_ioloop, fd, IO_READ,
					      ox_push_client_wakeup, NULL);
	}
	ox_push_log_flush();
}

void ox_push_shim_deinit(void)
{
	struct event *event;
	uint64_t dropped;

	timeout_remove(&ox_push_client_to);
	io_remove(&ox_push_client_io);
	/* Bounded by shutdown_timeout. */
	dropped = ox_push_shutdown(ox_push_log_write, ox_push_event);
	if (dropped > 0) {
		/* Counted as Dovecot events, e.g. with
		   metric ox_push_dropped { filter = event=ox_push_notifications_dropped } */
		event = event_create(ox_push_event);
		event_set_name(event, "ox_push_notifications_dropped");
		event_add_int(event, "dropped", dropped);
		e_error(event, "Dropped %llu notification(s) at exit: not handed "
			"to the ox-push relay within shutdown_timeout",
			(unsigned long long)dropped);
		event_unref(&event);
	}
	/* Put the built-in driver back, so that the core plugin's deinit finds
	   both "dlog" and "ox" (removing only ours would crash it). */
	push_notification_driver_unregister(&ox_push_driver);
	push_notification_driver_register(&push_notification_driver_ox);
	ox_push_maildir_lock_deinit();
	ox_push_config_deinit();
	event_unref(&ox_push_event);
}
