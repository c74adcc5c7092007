/* SPDX-License-Identifier: MIT */
/*
 * jstream: turns a byte stream of concatenated JSON values into messages,
 * with qemu-ga's framing, error recovery, limits and error texts.
 *
 * The stream has no framing of its own: a message ends when its braces and
 * brackets balance (or a scalar stands alone).  We lex the bytes exactly as
 * QEMU's JSON lexer does (which decides message boundaries, "stray" errors
 * and how a 0xFF resynchronises), rewrite each token into plain JSON, and
 * let json-c parse the complete message.  json-c's verdict is mapped back to
 * QEMU's wording; see jstream.c for the rules.
 *
 * Parsers do no I/O: the caller hands bytes in and gets events out, one at
 * a time, which is also what the fuzz target does.
 */
#ifndef QUIESCE_JSTREAM_H
#define QUIESCE_JSTREAM_H

#include <stdbool.h>
#include <stddef.h>

struct json_object;

struct jstream_limits {
	size_t max_size;   /* bytes of token text per message */
	size_t max_tokens; /* tokens per message */
	unsigned max_depth; /* open braces + brackets */
	size_t feed_at;    /* json-c gets the text in pieces of this many bytes (0: 16 KiB);
			      tests and fuzzing use tiny ones to try every split */
};

/* qemu-ga's limits (QEMU json-streamer.c): 64 MiB, 2 Mi tokens, depth 1024. */
#define JSTREAM_QEMU_LIMITS {64u << 20, 2u << 20, 1024}

/* Error texts quote at most this many bytes of client input, cut on a
 * character boundary and followed by "..." (qemu-ga quotes it all; see
 * docs/compat.md "Error texts quote at most 256 bytes of input").  Also used
 * by rpc for command and member names. */
#define JSTREAM_QUOTE_MAX 256

struct jstream_event {
	const char *error;         /* qemu-ga's error desc, valid until the next call; or NULL: */
	struct json_object *value; /* the parsed message, owned by the caller (NULL for null) */
	bool large;                /* the message was big: worth giving memory back after it */
};

struct jstream;

/* NULL on allocation failure. */
struct jstream *jstream_new(const struct jstream_limits *lim);
void jstream_free(struct jstream *js);

/* Consume bytes from (*data, *len) until one event is complete (returns 1,
 * *ev filled, the input advanced past what was used) or the input is used
 * up (returns 0; partial input is kept for the next call). */
int jstream_feed(struct jstream *js, const char **data, size_t *len, struct jstream_event *ev);

/* Forget any partial message and lexer state, e.g. for a new client. */
void jstream_reset(struct jstream *js);

/* Whether a partial message is pending (for tests and diagnostics). */
bool jstream_is_idle(const struct jstream *js);

#endif
