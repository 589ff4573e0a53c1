/* ox_push: concurrent maildir deliveries get their UIDs without Dovecot's
   slow wait for the dovecot-uidlist lock.

   The driver makes delivery transactions ask for UIDs at commit (so that the
   notification carries the real UID, not 0). maildir then waits for the
   uidlist dotlock, which Dovecot does with 100-200 ms timeouts woken by
   inotify; under concurrent deliveries into one mailbox that serialises them
   with long gaps. This file takes the lock just before the commit instead,
   retrying a non-blocking attempt after short sleeps; the commit then finds it
   held (the uidlist lock is counted) and goes straight on. */

#include "lib.h"
#include "sleep.h"
#include "time-util.h"
#include "mail-storage-private.h"
#include "mail-storage-hooks.h"
#include "maildir-storage.h"
#include "maildir-uidlist.h"

#include "ox-push-maildir-lock.h"

/* A delivery that assigns UIDs must hold dovecot-uidlist's lock at commit. Dovecot waits for that dotlock with 100-200 ms timeouts woken by
   inotify; under concurrent deliveries into one mailbox that serialises them
   with long gaps. Take the lock just before the commit instead, retrying a
   non-blocking attempt after short sleeps; the commit then finds it held.
   This serves every maildir transaction that saves mails and asks for UIDs:
   our deliveries (begin_txn), and equally IMAP APPEND or mail_log's, which
   wait for the same lock. */
static MODULE_CONTEXT_DEFINE_INIT(ox_push_storage_module,
				  &mail_storage_module_register);
#define OX_PUSH_BOX_CONTEXT(obj) \
	MODULE_CONTEXT_REQUIRE(obj, ox_push_storage_module)
#define OX_PUSH_UIDLIST_WAIT_MAX_USECS (2*1000*1000)

static bool ox_push_maildir_lock(struct mailbox *box)
{
	struct maildir_mailbox *mbox = MAILDIR_MAILBOX(box);
	struct timeval start, now;
	unsigned long long sleep_usecs = 50;
	int ret;

	if (mbox->uidlist == NULL)
		return FALSE;
	i_gettimeofday(&start);
	for (;;) {
		ret = maildir_uidlist_try_lock(mbox->uidlist);
		if (ret != 0)
			return ret > 0;
		i_gettimeofday(&now);
		if (timeval_diff_usecs(&now, &start) > OX_PUSH_UIDLIST_WAIT_MAX_USECS) {
			/* Let the commit wait in Dovecot's own way. */
			return FALSE;
		}
		i_sleep_usecs(sleep_usecs);
		if (sleep_usecs < 200)
			sleep_usecs *= 2;
	}
}

static int
ox_push_transaction_commit(struct mailbox_transaction_context *t,
			   struct mail_transaction_commit_changes *changes_r)
{
	struct mailbox *box = t->box;
	union mailbox_module_context *obox = OX_PUSH_BOX_CONTEXT(box);
	bool locked = FALSE;
	int ret;

	if (t->save_count > 0 &&
	    (t->flags & MAILBOX_TRANSACTION_FLAG_ASSIGN_UIDS) != 0)
		locked = ox_push_maildir_lock(box);
	ret = obox->super.transaction_commit(t, changes_r);
	if (locked)
		maildir_uidlist_unlock((MAILDIR_MAILBOX(box))->uidlist);
	return ret;
}

static void ox_push_mailbox_allocated(struct mailbox *box)
{
	struct mailbox_vfuncs *v = box->vlast;
	union mailbox_module_context *obox;

	if (strcmp(box->storage->name, MAILDIR_STORAGE_NAME) != 0)
		return;
	obox = p_new(box->pool, union mailbox_module_context, 1);
	obox->super = *v;
	box->vlast = &obox->super;
	v->transaction_commit = ox_push_transaction_commit;
	MODULE_CONTEXT_SET_SELF(box, ox_push_storage_module, obox);
}

static struct mail_storage_hooks ox_push_storage_hooks = {
	.mailbox_allocated = ox_push_mailbox_allocated,
};

void ox_push_maildir_lock_init(struct module *module)
{
	mail_storage_hooks_add(module, &ox_push_storage_hooks);
}

void ox_push_maildir_lock_deinit(void)
{
	mail_storage_hooks_remove(&ox_push_storage_hooks);
}
