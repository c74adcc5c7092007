// SPDX-License-Identifier: MIT
/*
 * quiesce-agent: entry point and event loop.
 *
 * One thread, one poll() over every fd: a signalfd (SIGTERM/SIGINT to stop,
 * SIGIO for "the virtio-serial host came back"), the channel (when it is
 * open; --retry-path retries are a deadline of the same poll), the freeze
 * watchdog's timer and the hook output pipe (background children of a hook
 * write there after it returned), so no state has a wait of its own.  Input is
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
#include <time.h>
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

/* The pidfile of -d.  Creating it blocks on a frozen filesystem, so an
 * agent that starts frozen writes it only after the thaw (as qemu-ga). */
struct pidfile {
	const char *path; /* NULL: none (-d not given) */
	bool written;     /* ours to unlink at exit */
};

static int write_pidfile(struct pidfile *p)
{
	int fd = open(p->path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
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
	p->written = true;
	return 0; /* the fd stays open: it holds the lock */
}

/* Write a pidfile still owed, once no filesystem is frozen. */
static void settle_pidfile(struct pidfile *p, const struct agent *a)
{
	if (!p->path || p->written || agent_is_frozen(a))
		return;
	int r = write_pidfile(p);
	if (r < 0) {
		log_error("cannot write pidfile %s: %s", p->path, strerror(-r));
		p->path = NULL; /* said once; an agent that is running keeps running */
	}
}

static int daemonize(void)
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
	return 0;
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

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What the loop owns besides the agent. */
struct loop {
	struct agent *a;
	const struct agent_options *o;
	enum chan_method method;
	struct chan *ch;  /* NULL while waiting to (re)open it (--retry-path) */
	int64_t retry_at; /* CLOCK_MONOTONIC ms of the next attempt, while ch is NULL */
	struct jstream *js;
	struct buf out;
};

/* Forget a client's partial input and unsent replies. */
static void reset_stream(struct loop *l)
{
	jstream_reset(l->js);
	buf_clear(&l->out, OUT_HIGH);
	l->a->delimit_next = false;
}

/* Try to open the channel if it is time.  -errno: give up (no --retry-path). */
static int try_open(struct loop *l)
{
	if (l->ch || now_ms() < l->retry_at)
		return 0;
	struct err e = {0};
	int r = chan_open(&l->ch, l->method, l->o->path, &e);
	if (r == 0)
		return 0;
	l->ch = NULL;
	if (!l->o->retry_path) {
		log_error("failed to initialize guest agent channel: %s", e.msg);
		return r;
	}
	log_warn("failed to initialize guest agent channel, will retry: %s", e.msg);
	l->retry_at = now_ms() + RETRY_INTERVAL_MS;
	return 0;
}

/* The channel's part of a loop turn.  -EIO: it failed, no --retry-path. */
static int serve(struct loop *l, short revents, char *in, size_t cap)
{
	size_t n;
	struct err e = {0};
	switch (chan_process(l->ch, revents, in, cap, &n, &e)) {
	case CHAN_CONNECTED:
	case CHAN_DISCONNECTED:
		reset_stream(l); /* a new client must not inherit the previous one's bytes */
		break;
	case CHAN_DATA:
		handle_input(l->a, l->js, in, n, &l->out);
		break;
	case CHAN_FAILED:
		log_error("%s", e.msg);
		chan_close(l->ch);
		l->ch = NULL;
		if (!l->o->retry_path)
			return -EIO;
		reset_stream(l);
		l->retry_at = now_ms() + RETRY_INTERVAL_MS;
		return 0;
	case CHAN_IDLE:
		break;
	}
	if (l->out.len)
		flush_output(l->ch, &l->out);
	return 0;
}

/* The event loop.  One poll() owns every wait, in every state: the signalfd
 * and the watchdog timer are watched whether or not the channel is open, so
 * a guest frozen when the channel fails, or an agent restarted frozen before
 * its channel exists (--retry-path), is still thawed on time. */
static int run(struct agent *a, const struct agent_options *o, int sigfd, struct pidfile *pid)
{
	struct jstream_limits lim = JSTREAM_QEMU_LIMITS;
	struct loop l = {.a = a, .o = o, .out = BUF_INIT};
	char in[READ_CHUNK];
	if (chan_method_parse(o->method, &l.method) < 0) {
		log_error("unsupported channel method/type: %s", o->method);
		return -EINVAL;
	}
	l.js = jstream_new(&lim);
	int r = l.js ? 0 : -ENOMEM;

	while (r == 0 && (r = try_open(&l)) == 0) {
		struct pollfd pfd[4] = {{sigfd, POLLIN, 0},
					{-1, 0, 0},
					{freezer_timer_fd(&a->freezer), POLLIN, 0},
					{freezer_output_fd(&a->freezer), POLLIN, 0}};
		int timeout = -1;
		if (l.ch) {
			chan_prepare(l.ch, &pfd[1], l.out.len < OUT_HIGH, l.out.len > 0, &timeout);
		} else {
			int64_t left = l.retry_at - now_ms();
			timeout = left < 0 ? 0 : (int)left;
		}
		if (poll(pfd, 4, timeout) < 0 && errno != EINTR) {
			r = -errno;
			break;
		}
		if (pfd[2].revents)
			freezer_watchdog_fired(&a->freezer);
		if (pfd[3].revents)
			freezer_output_ready(&a->freezer);
		if (pfd[0].revents) {
			int sig = read_signals(sigfd, l.ch);
			if (sig) {
				log_info("received signal %d, exiting", sig);
				break;
			}
		}
		if (l.ch)
			r = serve(&l, pfd[1].revents, in, sizeof(in));
		settle_pidfile(pid, a);
	}
	/* Never leave the guest frozen, whatever made us stop. */
	freezer_shutdown(&a->freezer);
	chan_close(l.ch);
	jstream_free(l.js);
	buf_free(&l.out);
	return r;
}

int main(int argc, char **argv)
{
	struct agent_options o = {0};
	struct agent a = {0};
	struct pidfile pid = {0};
	struct err e = {0};
	int ret = EXIT_FAILURE;
	int sigfd = -1;

	/* Until we know that no earlier instance left filesystems frozen, no
	 * message may be written anywhere: the log file, stderr or the pidfile
	 * may be on one of them, and a write there blocks for good. */
	log_hold();
	freezer_init(&a.freezer);

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
	log_info("quiesce-agent %s started (method %s)", QUIESCE_VERSION, o.method);
	a.blocked = o.block_rpcs;
	a.allowed = o.allow_rpcs;
	a.os_release = getenv("QGA_OS_RELEASE");
	/* Tests only: the mount table freezing works from, so that a test of
	 * "all filesystems" can never reach this machine's own. */
	const char *mountinfo = getenv("QUIESCE_MOUNTINFO");
	if (mountinfo && *mountinfo)
		a.freezer.mountinfo = mountinfo;
	a.freezer.hook = o.fsfreeze_hook;
	a.freezer.statedir = o.statedir;
	if (o.hook_timeout_s > 0)
		a.freezer.hook_timeout_ms = o.hook_timeout_s * 1000;
	if (o.freeze_timeout_s)
		a.freezer.watchdog_ms = o.freeze_timeout_s < 0 ? 0 : o.freeze_timeout_s * 1000;
	/* Reads the state marker only; if it is there, we start frozen. */
	if (freezer_start(&a.freezer, &e) < 0) {
		fprintf(stderr, "quiesce-agent: %s\n", e.msg);
		goto out;
	}
	bool frozen = agent_is_frozen(&a);

	if (o.logfile && !strcmp(o.logfile, "syslog")) {
		log_use_syslog("quiesce-agent");
	} else if (o.logfile && frozen) {
		if (log_defer_file(o.logfile) < 0)
			goto out;
	} else if (o.logfile && log_open_file(o.logfile, &e) < 0) {
		fprintf(stderr, "quiesce-agent: %s\n", e.msg);
		goto out;
	}
	if (!frozen)
		log_release();
	for (size_t i = 0; i < o.block_rpcs.n; i++)
		if (!rpc_find(o.block_rpcs.v[i]))
			log_warn("--block-rpcs: no command named '%s'", o.block_rpcs.v[i]);

	sigfd = open_signals();
	if (sigfd < 0) {
		log_error("cannot set up signal handling: %s", strerror(-sigfd));
		goto out;
	}
	if (o.daemonize) {
		if ((r = daemonize()) < 0) {
			log_error("cannot daemonize: %s", strerror(-r));
			goto out;
		}
		pid.path = o.pidfile;
		if (!frozen && (r = write_pidfile(&pid)) < 0) {
			log_error("cannot write pidfile %s: %s", o.pidfile, strerror(-r));
			goto out;
		}
	}
	seed_json_hash();
	if (run(&a, &o, sigfd, &pid) == 0)
		ret = EXIT_SUCCESS;
	if (pid.written && !agent_is_frozen(&a))
		(void)unlink(o.pidfile);
out:
	freezer_done(&a.freezer);
	if (sigfd >= 0)
		close(sigfd);
	/* Messages still held are written now, unless a filesystem is still
	 * frozen (a thaw at exit failed): then they are lost, not blocked on. */
	if (!agent_is_frozen(&a))
		log_release();
	/* a.blocked/a.allowed alias the option lists, freed here */
	options_free(&o);
	log_close();
	return ret;
}
