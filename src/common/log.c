// SPDX-License-Identifier: MIT
/*
 * log: leveled messages to stderr, a file or syslog, with a hold ring for
 * the frozen window (see log.h).
 *
 * Each line carries a wall-clock timestamp and the level.  The hold ring is
 * a fixed array of fixed-size slots, allocated once on first use: when it is
 * full the oldest messages are dropped and counted, and the count is logged
 * on release, so a long freeze never grows memory.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define RING_SLOTS 256
#define SLOT_LEN 512

struct held {
	enum log_level level;
	struct timespec when; /* when it was logged: written out with that time, not the release's */
	char text[SLOT_LEN];
};

static enum log_level max_level = LOG_LVL_INFO;
static int log_fd = -1; /* -1: stderr */
static bool to_syslog;
static bool held;
static struct held *ring;
static unsigned ring_head, ring_count, ring_dropped;
static char *deferred_path; /* log_defer_file(): opened by log_release() */

static const char *const level_names[] = {"error", "warning", "info", "debug"};

void log_set_level(enum log_level level)
{
	max_level = level;
}

bool log_is_enabled(enum log_level level)
{
	return level <= max_level;
}

void log_close(void)
{
	if (log_fd >= 0)
		(void)close(log_fd);
	log_fd = -1;
	free(deferred_path);
	deferred_path = NULL;
}

int log_defer_file(const char *path)
{
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	log_close();
	to_syslog = false;
	deferred_path = p;
	return 0;
}

int log_open_file(const char *path, struct err *e)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0)
		return err_sys(e, -errno, "cannot open log file '%s'", path);
	log_close();
	log_fd = fd;
	to_syslog = false;
	return 0;
}

void log_use_syslog(const char *ident)
{
	log_close();
	openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	to_syslog = true;
}

/* Write one record, stamped `when` (NULL: now).  syslog stamps records
 * itself, at the moment it receives them, so a held one says in its text
 * when it was logged. */
static void emit(enum log_level level, const char *text, const struct timespec *when)
{
	char stamp[32];
	struct timespec ts;
	struct tm tm;
	if (when)
		ts = *when;
	else
		clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + n, sizeof(stamp) - n, ".%03ld", ts.tv_nsec / 1000000);
	if (to_syslog) {
		static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
		if (when)
			syslog(prio[level], "(logged at %s, while frozen) %s", stamp, text);
		else
			syslog(prio[level], "%s", text);
		return;
	}
	char line[SLOT_LEN + 64];
	int len = snprintf(line, sizeof(line), "%s %s: %s\n", stamp, level_names[level], text);
	if (len < 0)
		return;
	if ((size_t)len >= sizeof(line))
		len = sizeof(line) - 1;
	ssize_t w = write(log_fd >= 0 ? log_fd : STDERR_FILENO, line, (size_t)len);
	(void)w; /* nowhere to report a failed log write */
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (!log_is_enabled(level))
		return;
	char text[SLOT_LEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);

	if (!held) {
		emit(level, text, NULL);
		return;
	}
	if (!ring)
		ring = calloc(RING_SLOTS, sizeof(*ring));
	if (!ring) {
		ring_dropped++;
		return;
	}
	if (ring_count == RING_SLOTS) {
		ring_head = (ring_head + 1) % RING_SLOTS;
		ring_count--;
		ring_dropped++;
	}
	struct held *h = &ring[(ring_head + ring_count) % RING_SLOTS];
	h->level = level;
	clock_gettime(CLOCK_REALTIME, &h->when);
	memcpy(h->text, text, sizeof(h->text));
	ring_count++;
}

/* How many bytes of s (at most max) to put in one piece: not ending inside
 * a UTF-8 sequence, unless that would leave nothing. */
static size_t piece_len(const unsigned char *s, size_t n, size_t max)
{
	if (n <= max)
		return n;
	size_t k = max;
	while (k > max - 3 && (s[k] & 0xC0) == 0x80)
		k--;
	return (s[k] & 0xC0) == 0x80 ? max : k;
}

void log_text(enum log_level level, const char *prefix, const char *text, size_t len)
{
	if (!log_is_enabled(level))
		return;
	const unsigned char *p = (const unsigned char *)text, *end = p + len;
	while (p < end) {
		const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t line = nl ? (size_t)(nl - p) : (size_t)(end - p);
		bool first = true;
		do {
			size_t n = piece_len(p, line, LOG_PIECE_MAX);
			char piece[LOG_PIECE_MAX + 1];
			for (size_t i = 0; i < n; i++)
				piece[i] = p[i] < 0x20 && p[i] != '\t' ? '?' : p[i] == 0x7f ? '?' : (char)p[i];
			piece[n] = '\0';
			log_msg(level, "%s%s: %s", prefix, first ? "" : " (continued)", piece);
			first = false;
			p += n;
			line -= n;
		} while (line > 0);
		p += nl ? 1 : 0;
	}
}

void log_hold(void)
{
	held = true;
}

bool log_is_held(void)
{
	return held;
}

void log_release(void)
{
	held = false;
	if (deferred_path) {
		char *path = deferred_path;
		deferred_path = NULL;
		struct err e;
		if (log_open_file(path, &e) < 0) {
			char text[sizeof(e.msg) + 32];
			snprintf(text, sizeof(text), "%s; logging to stderr", e.msg);
			emit(LOG_LVL_ERROR, text, NULL);
		}
		free(path);
	}
	if (ring_dropped)
		emit(LOG_LVL_WARN, "log messages were dropped while filesystems were frozen", NULL);
	for (; ring_count; ring_count--) {
		emit(ring[ring_head].level, ring[ring_head].text, &ring[ring_head].when);
		ring_head = (ring_head + 1) % RING_SLOTS;
	}
	ring_head = 0;
	ring_dropped = 0;
	free(ring);
	ring = NULL;
}
