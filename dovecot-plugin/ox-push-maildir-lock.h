/* ox_push: the maildir uidlist lock wrapper (see ox-push-maildir-lock.c). */
#ifndef OX_PUSH_MAILDIR_LOCK_H
#define OX_PUSH_MAILDIR_LOCK_H

struct module;

/* Wraps transaction_commit of maildir mailboxes (a mailbox_allocated hook). */
void ox_push_maildir_lock_init(struct module *module);
void ox_push_maildir_lock_deinit(void);

#endif
