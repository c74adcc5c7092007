/* SPDX-License-Identifier: MIT */
/*
 * log: the agent's (and later the CLI's) diagnostics.
 *
 * Destinations: stderr (default), an append-only file, or syslog.  While
 * guest filesystems are frozen a write to any of them may block forever
 * (the file's filesystem, or syslogd writing to its own), so log_hold()
 * diverts messages into a bounded in-memory ring that log_release() flushes
 * after the thaw.  Nothing here ever blocks on a frozen filesystem.
 *
 * The agent holds from its first instruction, before it knows whether an
 * earlier instance left filesystems frozen, and releases once it knows they
 * are not (or after the thaw): so even its start-up messages, and the open
 * of its log file, wait for the thaw when it restarts frozen.
 */
#ifndef QUIESCE_LOG_H
#define QUIESCE_LOG_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>

enum log_level {
	LOG_LVL_ERROR,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

void log_set_level(enum log_level level);
bool log_is_enabled(enum log_level level);
/* Append to `path` (created 0600), from now on.  Replaces any earlier
 * destination.  Opening (O_CREAT) blocks on a frozen filesystem: never call
 * this while one may be frozen; use log_defer_file() then. */
int log_open_file(const char *path, struct err *e);
/* The same, but the file is opened by the next log_release(), before the
 * held messages are written (to stderr, with the reason, if it fails). */
int log_defer_file(const char *path);
/* Send to syslog with this identity instead. */
void log_use_syslog(const char *ident);
/* Close a log file (e.g. before daemonising re-opens it). */
void log_close(void);

/* Frozen window: keep messages in memory; release writes them out. */
void log_hold(void);
void log_release(void);
bool log_is_held(void);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Longest piece of text one record carries (log_text). */
#define LOG_PIECE_MAX 400

/* Log a block of text (a hook's output) one record per line, each as
 * "<prefix>: <line>".  A line longer than LOG_PIECE_MAX bytes is cut into
 * pieces (never inside a UTF-8 sequence); every piece after the first is
 * written as "<prefix> (continued): <piece>".  Control characters other
 * than tab are shown as '?'.  A final newline adds no empty record. */
void log_text(enum log_level level, const char *prefix, const char *text, size_t len);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
/* One predicted-false branch when debug is off. */
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (__builtin_expect(log_is_enabled(LOG_LVL_DEBUG), 0))                            \
			log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                       \
	} while (0)

#endif
