// SPDX-License-Identifier: MIT
/* jsock: deadline-bounded JSON over unix sockets (see jsock.h). */
#include "jsock.h"

#include "xerr.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct jsock {
	int fd;
	char *path;
	json_tokener *tok;
	char buf[65536];
	size_t pos, len;
};

int64_t jsock_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *jsock_path(const struct jsock *s)
{
	return s->path;
}

static int wait_fd(struct jsock *s, short ev, int64_t deadline, struct err *e)
{
	for (;;) {
		int64_t left = deadline - jsock_now_ms();
		if (left <= 0)
			return xerr(e, QX_FAIL, "%s: no answer in time", s->path);
		struct pollfd p = {s->fd, ev, 0};
		int n = poll(&p, 1, (int)(left > 1000000 ? 1000000 : left));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return xerr_sys(e, QX_FAIL, errno, "%s: poll", s->path);
		if (n > 0)
			return 0;
	}
}

int jsock_connect(const char *path, int max_depth, int64_t deadline, struct jsock **out, struct err *e)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path))
		return xerr(e, QX_USAGE, "socket path too long: %s", path);
	strcpy(a.sun_path, path);
	struct jsock *s = calloc(1, sizeof(*s));
	if (!s || !(s->path = strdup(path)) || !(s->tok = json_tokener_new_ex(max_depth))) {
		if (s)
			free(s->path);
		free(s);
		return xerr(e, QX_FAIL, "out of memory");
	}
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int rc = 0;
	if (s->fd < 0) {
		rc = xerr_sys(e, QX_FAIL, errno, "socket");
	} else if (connect(s->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (errno == EINPROGRESS || errno == EAGAIN) {
			int soerr = 0;
			socklen_t l = sizeof(soerr);
			if ((rc = wait_fd(s, POLLOUT, deadline, e)) == 0 &&
			    (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0 || soerr))
				rc = xerr_sys(e, QX_SOURCE, soerr ? soerr : errno, "cannot connect to %s", path);
		} else {
			rc = xerr_sys(e, QX_SOURCE, errno, "cannot connect to %s", path);
		}
	}
	if (rc < 0) {
		jsock_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

void jsock_close(struct jsock *s)
{
	if (!s)
		return;
	if (s->fd >= 0)
		close(s->fd);
	json_tokener_free(s->tok);
	free(s->path);
	free(s);
}

int jsock_send(struct jsock *s, const void *data, size_t len, int64_t deadline, struct err *e)
{
	const char *p = data;
	while (len) {
		ssize_t n = send(s->fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			int rc = wait_fd(s, POLLOUT, deadline, e);
			if (rc < 0)
				return rc;
			continue;
		}
		if (n < 0)
			return xerr_sys(e, QX_FAIL, errno, "%s: send", s->path);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int jsock_send_json(struct jsock *s, json_object *o, int64_t deadline, struct err *e)
{
	size_t len;
	const char *t = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
	int rc = jsock_send(s, t, len, deadline, e);
	return rc < 0 ? rc : jsock_send(s, "\n", 1, deadline, e);
}

static int fill(struct jsock *s, int64_t deadline, struct err *e)
{
	for (;;) {
		ssize_t n = recv(s->fd, s->buf, sizeof(s->buf), 0);
		if (n > 0) {
			s->pos = 0;
			s->len = (size_t)n;
			return 0;
		}
		if (n == 0)
			return xerr(e, QX_FAIL, "%s: connection closed by the other side", s->path);
		if (errno != EAGAIN && errno != EINTR)
			return xerr_sys(e, QX_FAIL, errno, "%s: recv", s->path);
		int rc = wait_fd(s, POLLIN, deadline, e);
		if (rc < 0)
			return rc;
	}
}

int jsock_recv(struct jsock *s, int64_t deadline, json_object **out, struct err *e)
{
	for (;;) {
		while (s->pos < s->len) {
			/* skip separators between objects, which the tokener would take as the start of a
			 * value error otherwise */
			char c = s->buf[s->pos];
			if (c == '\n' || c == '\r' || c == ' ' || c == '\t') {
				s->pos++;
				continue;
			}
			json_object *o = json_tokener_parse_ex(s->tok, s->buf + s->pos, (int)(s->len - s->pos));
			enum json_tokener_error err = json_tokener_get_error(s->tok);
			size_t used = json_tokener_get_parse_end(s->tok);
			s->pos += used;
			if (err == json_tokener_continue)
				break; /* needs more bytes */
			if (err != json_tokener_success || !o) {
				json_tokener_reset(s->tok);
				json_object_put(o);
				return xerr(e, QX_FAIL, "%s: bad JSON from the other side: %s", s->path,
					    json_tokener_error_desc(err));
			}
			json_tokener_reset(s->tok);
			*out = o;
			return 0;
		}
		int rc = fill(s, deadline, e);
		if (rc < 0)
			return rc;
	}
}

int jsock_skip_to_ff(struct jsock *s, int64_t deadline, struct err *e)
{
	json_tokener_reset(s->tok);
	for (;;) {
		while (s->pos < s->len)
			if ((unsigned char)s->buf[s->pos++] == 0xFF)
				return 0;
		int rc = fill(s, deadline, e);
		if (rc < 0)
			return rc;
	}
}

void jsock_reset(struct jsock *s)
{
	s->pos = s->len = 0;
	json_tokener_reset(s->tok);
}
