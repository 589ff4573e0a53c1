/* service-probe: a plain program (no libdovecot) that Dovecot's master runs
   as a service in scripts/dovecot-2.4-smoke.sh, standing in for the relay.

   It reports what the master hands it -- open descriptors, environment,
   credentials -- through Dovecot's child log protocol (lib/failures.c: a line
   "\001" <log type + 1> <pid> " " <text>), writes one plain stderr line and
   one line of each level so that the log shows how each is logged, applies
   RESTRICT_SETEXTRAGROUPS/RESTRICT_SETGID/RESTRICT_SETUID as libdovecot
   would, and then greets every client of the first listening socket it was
   given with "probe pid=P uid=U gid=G", logging one line per client. It
   exits when the master dies (MASTER_DEAD_FD, 6, reaches EOF) or on SIGTERM.

   With --status it first sends the master the status record every
   libdovecot process sends (struct master_status on MASTER_STATUS_FD, 5):
   without it the master SIGKILLs the process after 30 s ("Initial status
   notification not received") and treats every exit as a startup failure
   (throttled, not restarted until a client connects). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* enum log_type in lib/failures.h; the protocol sends type + 1. */
enum probe_log_type { PROBE_DEBUG, PROBE_INFO, PROBE_WARNING, PROBE_ERROR };
#define MASTER_STATUS_FD 5
#define MASTER_DEAD_FD 6

/* lib-master/master-interface.h (same in 2.3 and 2.4) */
struct master_status {
	pid_t pid;
	unsigned int uid;		/* the GENERATION environment value */
	unsigned int available_count;	/* connections it still accepts */
};

static void probe_log(enum probe_log_type type, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void probe_log(enum probe_log_type type, const char *fmt, ...)
{
	char text[1024];
	va_list args;

	va_start(args, fmt);
	vsnprintf(text, sizeof(text), fmt, args);
	va_end(args);
	fprintf(stderr, "\001%c%ld %s\n", (char)(type + 1), (long)getpid(), text);
	fflush(stderr);
}

static int probe_is_listener(int fd)
{
	int on = 0;
	socklen_t len = sizeof(on);

	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

static void probe_describe_fd(int fd)
{
	struct sockaddr_un sun;
	socklen_t len = sizeof(sun);
	struct stat st;
	int flags;

	if (fstat(fd, &st) < 0) {
		probe_log(PROBE_INFO, "fd %d: %s", fd, strerror(errno));
		return;
	}
	flags = fcntl(fd, F_GETFL);
	if (!S_ISSOCK(st.st_mode)) {
		probe_log(PROBE_INFO, "fd %d: %s%s", fd,
			  S_ISFIFO(st.st_mode) ? "pipe" :
			  S_ISCHR(st.st_mode) ? "character device" : "file",
			  (flags & O_NONBLOCK) ? ", non-blocking" : "");
		return;
	}
	memset(&sun, 0, sizeof(sun));
	if (getsockname(fd, (struct sockaddr *)&sun, &len) < 0)
		sun.sun_family = AF_UNSPEC;
	probe_log(PROBE_INFO, "fd %d: %s socket%s%s%s%s", fd,
		  sun.sun_family == AF_UNIX ? "unix" : "other",
		  sun.sun_family == AF_UNIX && sun.sun_path[0] ? " " : "",
		  sun.sun_family == AF_UNIX ? sun.sun_path : "",
		  probe_is_listener(fd) ? ", listening" : "",
		  (flags & O_NONBLOCK) ? ", non-blocking" : "");
}

static void probe_report(void)
{
	static const char *const names[] = {
		"SERVICE_NAME", "SOCKET_COUNT", "SOCKET0_SETTINGS",
		"RESTRICT_SETUID", "RESTRICT_SETGID", "RESTRICT_SETEXTRAGROUPS",
		"RESTRICT_CHROOT", "RESTRICT_USER", "LOG_SERVICE", "LOG_DEBUG",
		"GENERATION", "CLIENT_LIMIT", "PROCESS_LIMIT",
		"PROCESS_MIN_AVAIL", "DOVECOT_VERSION", "CONFIG_FILE",
		"DOVECOT_CONFIG_FD",
	};
	gid_t groups[64];
	char list[512] = "";
	int i, n;

	probe_log(PROBE_INFO, "started: uid=%d euid=%d gid=%d egid=%d",
		  (int)getuid(), (int)geteuid(), (int)getgid(), (int)getegid());
	n = getgroups(64, groups);
	for (i = 0; i < n; i++) {
		size_t used = strlen(list);
		snprintf(list + used, sizeof(list) - used, "%s%d",
			 i ? "," : "", (int)groups[i]);
	}
	probe_log(PROBE_INFO, "supplementary groups: %s", n > 0 ? list : "(none)");
	for (i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++) {
		const char *value = getenv(names[i]);

		probe_log(PROBE_INFO, "env %s%s%s", names[i],
			  value ? "=" : " unset", value ? value : "");
	}
	for (i = 0; i <= 10; i++)
		probe_describe_fd(i);
}

/* As libdovecot's restrict_access_by_env(): groups, then gid, then uid. */
static int probe_drop_privileges(void)
{
	const char *uid = getenv("RESTRICT_SETUID");
	const char *gid = getenv("RESTRICT_SETGID");
	const char *extra = getenv("RESTRICT_SETEXTRAGROUPS");
	gid_t groups[64];
	size_t count = 0;

	if (uid == NULL || gid == NULL) {
		probe_log(PROBE_WARNING, "no RESTRICT_SETUID/SETGID: not dropping");
		return 0;
	}
	groups[count++] = (gid_t)atol(gid);
	if (extra != NULL) {
		char *copy = strdup(extra), *save = NULL, *tok;

		for (tok = strtok_r(copy, ", ", &save); tok != NULL && count < 64;
		     tok = strtok_r(NULL, ", ", &save))
			groups[count++] = (gid_t)atol(tok);
		free(copy);
	}
	if (geteuid() == 0 && setgroups(count, groups) < 0)
		return -1;
	if (setgid((gid_t)atol(gid)) < 0 || setuid((uid_t)atol(uid)) < 0)
		return -1;
	probe_log(PROBE_INFO, "after dropping: uid=%d euid=%d gid=%d",
		  (int)getuid(), (int)geteuid(), (int)getgid());
	return 0;
}

static void probe_send_status(void)
{
	const char *generation = getenv("GENERATION");
	const char *client_limit = getenv("CLIENT_LIMIT");
	struct master_status status;

	memset(&status, 0, sizeof(status));
	status.pid = getpid();
	status.uid = generation ? (unsigned int)strtoul(generation, NULL, 10) : 0;
	status.available_count = client_limit ?
		(unsigned int)strtoul(client_limit, NULL, 10) : 1;
	if (write(MASTER_STATUS_FD, &status, sizeof(status)) != sizeof(status))
		probe_log(PROBE_ERROR, "write(status) failed: %s", strerror(errno));
	else
		probe_log(PROBE_INFO, "sent master status (uid=%u available_count=%u)",
			  status.uid, status.available_count);
}

int main(int argc, char *argv[])
{
	struct pollfd pfd[2];
	int listener = -1, fd;

	fprintf(stderr, "a plain stderr line\n");
	fflush(stderr);
	probe_log(PROBE_DEBUG, "a debug line");
	probe_log(PROBE_INFO, "an info line");
	probe_log(PROBE_WARNING, "a warning line");
	probe_log(PROBE_ERROR, "an error line");
	probe_report();
	if (argc > 1 && strcmp(argv[1], "--status") == 0)
		probe_send_status();
	for (fd = 7; fd <= 8 && listener < 0; fd++) {
		if (probe_is_listener(fd))
			listener = fd;
	}
	if (listener < 0) {
		probe_log(PROBE_ERROR, "no listening socket on fd 7 or 8");
		return 1;
	}
	probe_log(PROBE_INFO, "listener is fd %d", listener);
	if (probe_drop_privileges() < 0) {
		probe_log(PROBE_ERROR, "dropping privileges failed: %s",
			  strerror(errno));
		return 1;
	}
	pfd[0].fd = listener;
	pfd[0].events = POLLIN;
	pfd[1].fd = MASTER_DEAD_FD;
	pfd[1].events = POLLIN;
	for (;;) {
		char greeting[128];
		int client, len;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		if (pfd[1].revents != 0)
			return 0;
		client = accept(listener, NULL, NULL);
		if (client < 0)
			continue;
		len = snprintf(greeting, sizeof(greeting), "probe pid=%ld uid=%d gid=%d\n",
			       (long)getpid(), (int)getuid(), (int)getgid());
		(void)write(client, greeting, (size_t)len);
		close(client);
		probe_log(PROBE_INFO, "greeted a client");
	}
}
