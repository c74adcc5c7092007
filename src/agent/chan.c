// SPDX-License-Identifier: MIT
/*
 * chan: transports to the host (see chan.h).
 *
 * virtio-serial needs care.  While no process on the host has the chardev
 * open, the port polls as POLLHUP and reads return 0, forever: polling it
 * then spins the CPU.  qemu-ga sleeps 100 ms per wakeup instead.  We stop
 * polling the port ("host away") and wait for the SIGIO that the
 * virtio_console driver raises when the host side opens or data arrives
 * (we own the fd with F_SETOWN/O_ASYNC), with a backing-off look (10 ms,
 * doubling to 1 s) as a fallback.
 *
 * When a host attaches, its first bytes can reach us before the driver has
 * processed the "port open" control message: we then read data, and the
 * next read says EOF although the host is there.  So EOF counts as a
 * disconnect (which resets the parser) only if we had seen the host
 * connected, i.e. a poll without POLLHUP; a quick recheck then finds the
 * host a few milliseconds later without losing what was already read.
 *
 * Listen methods serve one client at a time: the listening fd is not
 * polled while a client is connected, so later connects queue in the
 * kernel backlog, exactly as with qemu-ga.
 *
 * An accept4() that fails while a connect is still queued (EMFILE, ENFILE,
 * ENOMEM: what builds up in a guest that is in trouble) leaves the listener
 * readable, so polling it again at once would spin.  The listener is then
 * left out of poll for a while (10 ms doubling to 1 s; chan_prepare()
 * lowers the loop's timeout to match), the failure is logged once, and the
 * waiting client is served as soon as an accept4() works again.  A socket
 * from systemd that is not listening (Accept=yes passes a connection) would
 * fail accept4() with EINVAL for ever: it is refused at start instead.
 */
#include "chan.h"

#include "cleanup.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* Clients beyond the one being served wait here (qemu-ga uses 1, which
 * makes a third concurrent connect fail with EAGAIN instead of waiting). */
#define LISTEN_BACKLOG 16
#define RECHECK_FIRST_MS 10
#define RECHECK_MAX_MS 1000
#define ACCEPT_RETRY_FIRST_MS 10
#define ACCEPT_RETRY_MAX_MS 1000

struct chan {
	enum chan_method method;
	int fd;        /* device, or listening socket */
	int client;    /* accepted client (listen methods) */
	bool host_away; /* virtio-serial: host side closed; port not polled */
	bool host_seen; /* virtio-serial: a poll without POLLHUP since the last EOF */
	int recheck_ms; /* virtio-serial: next look while away */
	int accept_retry_ms;     /* listen: backoff after a failed accept4(); 0 = none */
	int64_t accept_again_ms; /* listen: when to poll the listener again (monotonic) */
};

static const char *const method_names[] = {
	[CHAN_VIRTIO_SERIAL] = "virtio-serial",
	[CHAN_ISA_SERIAL] = "isa-serial",
	[CHAN_UNIX_LISTEN] = "unix-listen",
	[CHAN_VSOCK_LISTEN] = "vsock-listen",
};

int chan_method_parse(const char *name, enum chan_method *ret)
{
	for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++)
		if (!strcmp(name, method_names[i])) {
			*ret = (enum chan_method)i;
			return 0;
		}
	return -EINVAL;
}

const char *chan_method_name(enum chan_method m)
{
	return method_names[m];
}

const char *chan_default_path(enum chan_method m)
{
	switch (m) {
	case CHAN_VIRTIO_SERIAL: return "/dev/virtio-ports/org.qemu.guest_agent.0";
	case CHAN_ISA_SERIAL: return "/dev/ttyS0";
	default: return NULL;
	}
}

static bool is_listen(const struct chan *c)
{
	return c->method == CHAN_UNIX_LISTEN || c->method == CHAN_VSOCK_LISTEN;
}

static int open_virtio(struct chan *c, const char *path, struct err *e)
{
	c->fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (c->fd < 0)
		return err_sys(e, -errno, "cannot open channel '%s'", path);
	/* Ask for SIGIO when the host side opens the port. */
	if (fcntl(c->fd, F_SETOWN, getpid()) < 0 ||
	    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_ASYNC) < 0)
		log_warn("cannot enable SIGIO on '%s' (%s); relying on periodic checks", path,
			 strerror(errno));
	return 0;
}

static int open_serial(struct chan *c, const char *path, struct err *e)
{
	c->fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (c->fd < 0)
		return err_sys(e, -errno, "cannot open channel '%s'", path);
	struct termios t;
	if (tcgetattr(c->fd, &t) < 0)
		return err_sys(e, -errno, "'%s' is not a serial port", path);
	/* raw: no echo, no CR/LF translation, no flow control; 38400 baud */
	cfmakeraw(&t);
	t.c_iflag &= ~(unsigned)(IXON | IXOFF | IXANY);
	t.c_cflag |= CLOCAL | CREAD;
	t.c_cflag &= ~(unsigned)CRTSCTS;
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	cfsetispeed(&t, B38400);
	cfsetospeed(&t, B38400);
	if (tcsetattr(c->fd, TCSANOW, &t) < 0)
		return err_sys(e, -errno, "cannot configure serial port '%s'", path);
	(void)tcflush(c->fd, TCIFLUSH);
	return 0;
}

/* A non-blocking listening stream socket bound to sa; `what` names it in
 * errors. */
static int listen_on(struct chan *c, const struct sockaddr *sa, socklen_t len, const char *what,
		     struct err *e)
{
	const char *kind = sa->sa_family == AF_VSOCK ? "vsock " : "";
	c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		return err_sys(e, -errno, "cannot create %ssocket", kind);
	if (bind(c->fd, sa, len) < 0)
		return err_sys(e, -errno, "cannot bind to %s'%s'", kind, what);
	if (listen(c->fd, LISTEN_BACKLOG) < 0)
		return err_sys(e, -errno, "cannot listen on %s'%s'", kind, what);
	return 0;
}

static int listen_unix(struct chan *c, const char *path, struct err *e)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return err_set(e, -ENAMETOOLONG, "socket path '%s' is too long", path);
	strcpy(sa.sun_path, path);
	struct stat st;
	/* Replace a stale socket from an earlier run, but never a regular file. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		(void)unlink(path);
	return listen_on(c, (struct sockaddr *)&sa, sizeof(sa), path, e);
}

static int listen_vsock(struct chan *c, const char *path, struct err *e)
{
	unsigned cid, port;
	char tail;
	if (sscanf(path, "%u:%u%c", &cid, &port, &tail) != 2)
		return err_set(e, -EINVAL, "vsock address '%s' is not <cid>:<port>", path);
	struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
	return listen_on(c, (struct sockaddr *)&sa, sizeof(sa), path, e);
}

/* systemd socket activation: exactly one listening socket in fd 3. */
static int from_activation(struct chan *c, bool *used, struct err *e)
{
	*used = false;
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	if (!pid || !fds || strtol(pid, NULL, 10) != getpid())
		return 0;
	long n = strtol(fds, NULL, 10);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (n != 1)
		return err_set(e, -EINVAL,
			       "quiesce-agent only supports listening on one socket (got %ld)", n);
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(3, (struct sockaddr *)&ss, &len) < 0)
		return err_sys(e, -errno, "socket passed by systemd is unusable");
	if (ss.ss_family == AF_UNIX)
		c->method = CHAN_UNIX_LISTEN;
	else if (ss.ss_family == AF_VSOCK)
		c->method = CHAN_VSOCK_LISTEN;
	else
		return err_set(e, -EAFNOSUPPORT, "socket passed by systemd is neither unix nor vsock");
	int listening = 0;
	socklen_t optlen = sizeof(listening);
	if (getsockopt(3, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) < 0 || !listening)
		return err_set(e, -EINVAL,
			       "socket passed by systemd is not listening (a connection, as "
			       "Accept=yes passes?); quiesce-agent needs a listening socket "
			       "(Accept=no)");
	c->fd = 3;
	(void)fcntl(3, F_SETFD, FD_CLOEXEC);
	(void)fcntl(3, F_SETFL, fcntl(3, F_GETFL) | O_NONBLOCK);
	*used = true;
	return 0;
}

int chan_open(struct chan **ret, enum chan_method m, const char *path, struct err *e)
{
	struct chan *c = calloc(1, sizeof(*c));
	if (!c)
		return err_set(e, -ENOMEM, "out of memory");
	c->method = m;
	c->fd = c->client = -1;
	c->recheck_ms = RECHECK_FIRST_MS;
	bool activated;
	int r = from_activation(c, &activated, e);
	if (r == 0 && !activated) {
		if (!path)
			path = chan_default_path(m);
		if (!path)
			r = err_set(e, -EINVAL, "must specify a path for this channel");
		else if (m == CHAN_VIRTIO_SERIAL)
			r = open_virtio(c, path, e);
		else if (m == CHAN_ISA_SERIAL)
			r = open_serial(c, path, e);
		else if (m == CHAN_UNIX_LISTEN)
			r = listen_unix(c, path, e);
		else
			r = listen_vsock(c, path, e);
	}
	if (r < 0) {
		chan_close(c);
		return r;
	}
	*ret = c;
	return 0;
}

void chan_close(struct chan *c)
{
	if (!c)
		return;
	if (c->client >= 0)
		(void)close(c->client);
	if (c->fd >= 0)
		(void)close(c->fd);
	free(c);
}

bool chan_is_connected(const struct chan *c)
{
	return is_listen(c) ? c->client >= 0 : !c->host_away;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void lower_timeout(int *timeout_ms, int ms)
{
	if (*timeout_ms < 0 || *timeout_ms > ms)
		*timeout_ms = ms;
}

void chan_prepare(struct chan *c, struct pollfd *pfd, bool want_input, bool want_output,
		  int *timeout_ms)
{
	pfd->revents = 0;
	pfd->events = (short)((want_input ? POLLIN : 0) | (want_output ? POLLOUT : 0));
	if (is_listen(c)) {
		if (c->client >= 0) {
			pfd->fd = c->client;
			return;
		}
		pfd->fd = c->fd;
		pfd->events = POLLIN;
		if (c->accept_retry_ms) { /* backing off after a failed accept4() */
			int64_t left = c->accept_again_ms - now_ms();
			if (left > 0) {
				pfd->fd = -1;
				lower_timeout(timeout_ms, (int)left);
			}
		}
		return;
	}
	if (c->host_away) {
		pfd->fd = -1; /* ignored by poll */
		lower_timeout(timeout_ms, c->recheck_ms);
		return;
	}
	pfd->fd = c->fd;
}

void chan_wakeup(struct chan *c)
{
	log_debug("SIGIO: looking at the port again");
	c->host_away = false;
	c->recheck_ms = RECHECK_FIRST_MS;
}

static enum chan_event drop_client(struct chan *c)
{
	(void)close(c->client);
	c->client = -1;
	return CHAN_DISCONNECTED;
}

static enum chan_event accept_client(struct chan *c)
{
	c->client = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (c->client >= 0) {
		if (c->accept_retry_ms)
			log_info("accepting clients again");
		c->accept_retry_ms = 0;
		return CHAN_CONNECTED;
	}
	int err = errno;
	if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED ||
	    err == EPROTO || err == EPERM)
		return CHAN_IDLE; /* that client is gone; nothing is left queued for it */
	if (!c->accept_retry_ms) {
		log_warn("cannot accept a client: %s; trying again until it works", strerror(err));
		c->accept_retry_ms = ACCEPT_RETRY_FIRST_MS;
	} else if (c->accept_retry_ms < ACCEPT_RETRY_MAX_MS) {
		c->accept_retry_ms *= 2;
		if (c->accept_retry_ms > ACCEPT_RETRY_MAX_MS)
			c->accept_retry_ms = ACCEPT_RETRY_MAX_MS;
	}
	c->accept_again_ms = now_ms() + c->accept_retry_ms;
	return CHAN_IDLE;
}

enum chan_event chan_process(struct chan *c, short revents, char *buf, size_t cap, size_t *n,
			     struct err *e)
{
	*n = 0;
	if (is_listen(c) && c->client < 0) /* an error or hangup too: accept4() says which */
		return (revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL)) ? accept_client(c) : CHAN_IDLE;
	if (c->host_away) { /* the periodic look: try the port again */
		c->host_away = false;
		c->recheck_ms = c->recheck_ms * 2 > RECHECK_MAX_MS ? RECHECK_MAX_MS : c->recheck_ms * 2;
		return CHAN_IDLE;
	}
	if (!revents)
		return CHAN_IDLE;
	if (!is_listen(c) && !(revents & POLLHUP))
		c->host_seen = true;
	int fd = is_listen(c) ? c->client : c->fd;
	if (revents & (POLLIN | POLLHUP | POLLERR)) {
		ssize_t r = read(fd, buf, cap);
		if (r > 0) {
			log_debug("read %zd bytes (revents 0x%x)", r, (unsigned)revents);
			*n = (size_t)r;
			return CHAN_DATA;
		}
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return CHAN_IDLE;
		if (is_listen(c))
			return drop_client(c);
		if (r < 0 && c->method != CHAN_VIRTIO_SERIAL) {
			err_sys(e, -errno, "error reading channel");
			return CHAN_FAILED;
		}
		/* virtio-serial: EOF (or an error) while the host is away */
		log_debug("port reports no host (revents 0x%x, seen %d, recheck %d ms)", (unsigned)revents,
			  c->host_seen, c->recheck_ms);
		c->host_away = true;
		if (!c->host_seen)
			return CHAN_IDLE; /* not connected yet, or never was: keep input */
		c->host_seen = false;
		c->recheck_ms = RECHECK_FIRST_MS;
		return CHAN_DISCONNECTED;
	}
	return CHAN_IDLE;
}

ssize_t chan_write(struct chan *c, const char *p, size_t n)
{
	int fd = is_listen(c) ? c->client : c->fd;
	if (fd < 0 || (!is_listen(c) && c->host_away))
		return -EPIPE;
	ssize_t r = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (r < 0 && errno == ENOTSOCK)
		r = write(fd, p, n);
	if (r < 0)
		return errno == EINTR ? -EAGAIN : -errno;
	return r;
}
