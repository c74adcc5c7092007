// SPDX-License-Identifier: MIT
/*
 * quiesce-agent: entry point and event loop.
 *
 * One thread, one poll() over two fds: a signalfd (SIGTERM/SIGINT to stop,
 * SIGIO for "the virtio-serial host came back") and the channel.  Input is
 * read in 4 KiB chunks and cut into messages by jstream; each message is
 * answered by rpc, in order, into an output buffer that is written without
 * ever blocking, so a host that stops reading cannot wedge the agent.
 * While more than OUT_HIGH bytes of replies are waiting, no more input is
 * read: a client that never reads gets backpressure, not unbounded memory.
 */
#include "agent.h"
#include "build-config.h"
#include "chan.h"
#include "commands.h"
#include "jstream.h"
#include "log.h"
#include "options.h"
#include "rpc.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_CHUNK 4096
#define OUT_HIGH (64u * 1024)
#define RETRY_INTERVAL_MS 5000

static void no_op(int sig)
{
	(void)sig;
}

static int open_signals(void)
{
	/* Real (empty) handlers, although the signals stay blocked and are
	 * read from a signalfd: as PID 1 of a container or namespace, the
	 * kernel drops signals whose disposition is SIG_DFL, so SIGTERM would
	 * never reach us and a frozen guest could not be stopped cleanly. */
	static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGIO};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], no_op);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGIO);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

/* Returns the number of a stop signal received, or 0. */
static int read_signals(int sigfd, struct chan *ch)
{
	struct signalfd_siginfo si;
	int stop = 0;
	while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			stop = (int)si.ssi_signo;
		else if (si.ssi_signo == SIGIO && ch)
			chan_wakeup(ch);
	}
	return stop;
}

/* Wait up to ms for a stop signal; returns it, or 0. */
static int sleep_for_signal(int sigfd, int ms)
{
	struct pollfd p = {sigfd, POLLIN, 0};
	if (poll(&p, 1, ms) > 0)
		return read_signals(sigfd, NULL);
	return 0;
}

static int write_pidfile(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (lockf(fd, F_TLOCK, 0) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || write(fd, pid, (size_t)n) != n) {
		int r = -errno;
		close(fd);
		return r;
	}
	return 0; /* the fd stays open: it holds the lock */
}

static int daemonize(const char *pidfile)
{
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -errno;
	umask(S_IRWXG | S_IRWXO);
	if (chdir("/") < 0)
		return -errno;
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	int r = write_pidfile(pidfile);
	if (r < 0)
		log_error("cannot write pidfile %s: %s", pidfile, strerror(-r));
	return r;
}

/* Send what the channel takes now; drop the backlog if the peer is gone.
 * buf_consume() only moves the start of the queue, so draining it costs
 * time linear in its size however little each write takes (virtio-serial:
 * at most 32 KiB). */
static void flush_output(struct chan *ch, struct buf *out)
{
	while (out->len) {
		ssize_t w = chan_write(ch, out->data, out->len);
		if (w > 0) {
			buf_consume(out, (size_t)w);
			continue;
		}
		if (w == -EAGAIN || w == -EWOULDBLOCK)
			return;
		log_debug("dropping %zu bytes of replies: %s", out->len, strerror((int)-w));
		break;
	}
	buf_clear(out, OUT_HIGH);
}

static void handle_input(struct agent *a, struct jstream *js, const char *p, size_t n,
			 struct buf *out)
{
	struct jstream_event ev;
	while (jstream_feed(js, &p, &n, &ev))
		rpc_handle(a, &ev, out);
}

/* json-c seeds its string hash from getrandom()/urandom the first time an
 * object gets a key.  On a freshly booted guest with no entropy yet (no
 * RDRAND, no virtio-rng: typical under TCG) that read makes Linux >= 5.18
 * generate jitter entropy for up to a second.  Pay that here, before the
 * channel opens, never inside a host's first request.  (A seeded hash is
 * worth keeping: the host can send objects with a million keys.) */
static void seed_json_hash(void)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "seed", NULL);
	json_object_put(o);
}

static int open_channel(const struct agent_options *o, int sigfd, struct chan **ret)
{
	enum chan_method m;
	if (chan_method_parse(o->method, &m) < 0) {
		log_error("unsupported channel method/type: %s", o->method);
		return -EINVAL;
	}
	for (;;) {
		struct err e = {0};
		int r = chan_open(ret, m, o->path, &e);
		if (r == 0)
			return 0;
		if (!o->retry_path) {
			log_error("failed to initialize guest agent channel: %s", e.msg);
			return r;
		}
		log_warn("failed to initialize guest agent channel, will retry: %s", e.msg);
		if (sleep_for_signal(sigfd, RETRY_INTERVAL_MS))
			return -EINTR;
	}
}

static int run(struct agent *a, const struct agent_options *o, int sigfd)
{
	struct jstream_limits lim = JSTREAM_QEMU_LIMITS;
	struct jstream *js = jstream_new(&lim);
	struct chan *ch = NULL;
	struct buf out = BUF_INIT;
	char in[READ_CHUNK];
	int r = js ? open_channel(o, sigfd, &ch) : -ENOMEM;

	while (r == 0) {
		struct pollfd pfd[3] = {{sigfd, POLLIN, 0}, {0}, {freezer_timer_fd(&a->freezer), POLLIN, 0}};
		int timeout = -1;
		chan_prepare(ch, &pfd[1], out.len < OUT_HIGH, out.len > 0, &timeout);
		if (poll(pfd, 3, timeout) < 0 && errno != EINTR) {
			r = -errno;
			break;
		}
		if (pfd[2].revents)
			freezer_watchdog_fired(&a->freezer);
		if (pfd[0].revents) {
			int sig = read_signals(sigfd, ch);
			if (sig) {
				log_info("received signal %d, exiting", sig);
				break;
			}
		}
		size_t n;
		struct err e = {0};
		switch (chan_process(ch, pfd[1].revents, in, sizeof(in), &n, &e)) {
		case CHAN_CONNECTED:
		case CHAN_DISCONNECTED:
			/* a new client must not inherit the previous one's bytes */
			jstream_reset(js);
			buf_clear(&out, OUT_HIGH);
			a->delimit_next = false;
			break;
		case CHAN_DATA:
			handle_input(a, js, in, n, &out);
			break;
		case CHAN_FAILED:
			log_error("%s", e.msg);
			chan_close(ch);
			ch = NULL;
			if (!o->retry_path) {
				r = -EIO;
				break;
			}
			jstream_reset(js);
			buf_clear(&out, OUT_HIGH);
			if (sleep_for_signal(sigfd, RETRY_INTERVAL_MS) == 0)
				r = open_channel(o, sigfd, &ch);
			else
				r = 1; /* stop signal: clean exit */
			break;
		case CHAN_IDLE:
			break;
		}
		if (ch && out.len)
			flush_output(ch, &out);
	}
	/* Never leave the guest frozen, whatever made us stop. */
	freezer_shutdown(&a->freezer);
	chan_close(ch);
	jstream_free(js);
	buf_free(&out);
	return r > 0 ? 0 : r;
}

int main(int argc, char **argv)
{
	struct agent_options o = {0};
	struct agent a = {0};
	struct err e = {0};
	int ret = EXIT_FAILURE;

	int r = options_parse(&o, argc, argv, &e);
	if (r < 0) {
		if (e.msg[0]) /* empty: already explained (bad option) */
			fprintf(stderr, "quiesce-agent: %s\n", e.msg);
		goto out;
	}
	if (r == OPTIONS_EXIT) {
		if (o.list_rpcs)
			for (size_t i = 0; i < rpc_command_count; i++)
				printf("%s\n", rpc_commands[i]->name);
		ret = EXIT_SUCCESS;
		goto out;
	}
	if (o.dump_conf) {
		options_dump(&o, stdout);
		ret = EXIT_SUCCESS;
		goto out;
	}

	log_set_level(o.verbose ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	if (o.logfile && !strcmp(o.logfile, "syslog")) {
		log_use_syslog("quiesce-agent");
	} else if (o.logfile && log_open_file(o.logfile, &e) < 0) {
		fprintf(stderr, "quiesce-agent: %s\n", e.msg);
		goto out;
	}
	for (size_t i = 0; i < o.block_rpcs.n; i++)
		if (!rpc_find(o.block_rpcs.v[i]))
			log_warn("--block-rpcs: no command named '%s'", o.block_rpcs.v[i]);
	a.blocked = o.block_rpcs;
	a.allowed = o.allow_rpcs;
	a.os_release = getenv("QGA_OS_RELEASE");
	freezer_init(&a.freezer);
	a.freezer.hook = o.fsfreeze_hook;
	a.freezer.statedir = o.statedir;
	if (o.hook_timeout_s > 0)
		a.freezer.hook_timeout_ms = o.hook_timeout_s * 1000;
	if (o.freeze_timeout_s)
		a.freezer.watchdog_ms = o.freeze_timeout_s < 0 ? 0 : o.freeze_timeout_s * 1000;

	int sigfd = open_signals();
	if (sigfd < 0) {
		log_error("cannot set up signal handling: %s", strerror(-sigfd));
		goto out;
	}
	if (o.daemonize && daemonize(o.pidfile) < 0)
		goto out_sig;
	log_info("quiesce-agent %s started (method %s)", QUIESCE_VERSION, o.method);
	seed_json_hash();
	if (freezer_start(&a.freezer, &e) < 0) {
		log_error("%s", e.msg);
		goto out_sig;
	}
	if (run(&a, &o, sigfd) == 0)
		ret = EXIT_SUCCESS;
	freezer_done(&a.freezer);
	if (o.daemonize)
		(void)unlink(o.pidfile);
out_sig:
	close(sigfd);
out:
	/* a.blocked/a.allowed alias the option lists, freed here */
	options_free(&o);
	log_close();
	return ret;
}
