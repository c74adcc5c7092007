// SPDX-License-Identifier: MIT
/*
 * jstream: qemu-ga-compatible framing over json-c (see jstream.h).
 *
 * Three layers, in the order bytes meet them:
 *
 * 1. The lexer (step()) is a state machine equivalent to QEMU's JSON lexer:
 *    structural characters, strings in double or single quotes (bytes
 *    0x20..0xFD; an escape takes any such byte), numbers
 *    -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, and keywords [a-z]+.
 *    Anything else is a lexical error, reported as "stray '<text so far>'".
 *    After an error the lexer skips input until a structural character, a
 *    control character other than tab, or 0xFE/0xFF, which is why a client
 *    can always resynchronise with 0xFF or a newline.  Number and keyword
 *    tokens end on the first character that cannot continue them; that
 *    character is then lexed afresh (lookahead).
 *
 * 2. The message layer (message_token()) counts braces and brackets as
 *    QEMU 7.2's streamer does (see there for its exact, slightly odd, rule
 *    for when a message is complete) and enforces the size/token/depth
 *    limits, resetting after each error.  Each token is rewritten into canonical JSON in `msg`:
 *    single-quoted strings become double-quoted, QEMU's extra escape \'
 *    disappears, integers too large for 64 bits become doubles (as QEMU
 *    parses them).  Errors that only QEMU's parser would find inside a token
 *    (bad escapes, invalid UTF-8, lone surrogates, unknown keywords) are
 *    remembered with their position and the token is replaced by a harmless
 *    placeholder.
 *
 * 3. json-c parses the canonical text as it is produced (feed(): its
 *    tokener keeps its state between pieces), so the text of a message is
 *    never held whole.  QEMU reports the first error in input order, so the
 *    remembered token error wins if it comes before the point where json-c
 *    gave up; otherwise json-c's error code is mapped to QEMU's wording,
 *    once the message is complete.  json-c keeps the last of duplicate
 *    keys, QEMU rejects them: a message whose objects hold fewer members
 *    than it had ':' tokens had a duplicate.
 *
 * Memory: a message costs its raw token being lexed, json-c's copy of the
 * value being built and the values built so far, never the text of the
 * whole message besides: a big token reaches json-c in pieces, and its
 * last bytes (which make json-c build the value) only once the raw token
 * is freed, so a 63 MB string peaks at about twice its size.  Buffers, and
 * json-c's tokener, are freed back to a small size after each big message,
 * so a hostile message costs memory only while it is being received.
 */
#include "jstream.h"

#include "buf.h"
#include "utf8.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Buffers above this are freed after each message rather than reused. */
#define IDLE_KEEP (64u * 1024)
/* Canonical text is handed to json-c in pieces of about this size. */
#define FEED_AT_DEFAULT (16u * 1024)

enum lex_state {
	L_START,
	L_RECOVERY,
	L_DQ,
	L_DQ_ESC,
	L_SQ,
	L_SQ_ESC,
	L_ZERO,
	L_DIGITS,
	L_SIGN,
	L_MANT,
	L_MANT_DIGITS,
	L_EXP_E,
	L_EXP_SIGN,
	L_EXP_DIGITS,
	L_KEYWORD,
};

enum tok_type {
	T_LCURLY,
	T_RCURLY,
	T_LSQUARE,
	T_RSQUARE,
	T_COLON,
	T_COMMA,
	T_STRING,
	T_INTEGER,
	T_FLOAT,
	T_KEYWORD,
};

/* step() result bits */
#define CONSUMED 1
#define EVENT 2

struct jstream {
	struct jstream_limits lim;
	enum lex_state state;
	struct buf tok; /* raw text of the token being lexed */
	struct buf msg; /* canonical JSON of the message so far */
	long brace, bracket;
	size_t tokens, size, colons;
	bool large;
	bool has_defer;
	size_t defer_at;        /* offset in the canonical text of the first in-token error */
	struct buf defer;       /* its desc */
	struct buf errtext;     /* desc of the event being returned */
	struct json_tokener *tokener;
	size_t fed;             /* canonical text handed to json-c so far (this message) */
	bool parsed;            /* json-c is done with this message: */
	enum json_tokener_error parse_err; /* its verdict, */
	size_t parse_at;        /* where it stopped (offset in the canonical text), */
	char parse_char;        /* the byte there ('\0' at the end), */
	struct json_object *value; /* and the value, on success */
};

static struct json_tokener *tokener_new(const struct jstream_limits *lim)
{
	struct json_tokener *t = json_tokener_new_ex((int)lim->max_depth + 2);
	if (t)
		json_tokener_set_flags(t, JSON_TOKENER_STRICT);
	return t;
}

struct jstream *jstream_new(const struct jstream_limits *lim)
{
	struct jstream *js = calloc(1, sizeof(*js));
	if (!js)
		return NULL;
	js->lim = *lim;
	if (!js->lim.feed_at)
		js->lim.feed_at = FEED_AT_DEFAULT;
	js->tokener = tokener_new(lim);
	if (!js->tokener) {
		free(js);
		return NULL;
	}
	return js;
}

void jstream_free(struct jstream *js)
{
	if (!js)
		return;
	buf_free(&js->tok);
	buf_free(&js->msg);
	buf_free(&js->defer);
	buf_free(&js->errtext);
	json_object_put(js->value);
	json_tokener_free(js->tokener);
	free(js);
}

/* Whether the current message made our buffers grow past the idle size. */
static bool is_large(const struct jstream *js)
{
	return js->large || js->fed > IDLE_KEEP || js->msg.cap > IDLE_KEEP ||
	       js->tok.cap > IDLE_KEEP;
}

static void message_reset(struct jstream *js)
{
	buf_clear(&js->msg, IDLE_KEEP);
	buf_clear(&js->defer, IDLE_KEEP);
	js->brace = js->bracket = 0;
	js->tokens = js->size = js->colons = 0;
	js->has_defer = false;
	json_object_put(js->value);
	js->value = NULL;
	js->parsed = false;
	/* json-c keeps the buffer it built the biggest string in: after a big
	 * message, start with a fresh tokener (or reuse the old one). */
	struct json_tokener *fresh = js->fed > IDLE_KEEP ? tokener_new(&js->lim) : NULL;
	if (fresh) {
		json_tokener_free(js->tokener);
		js->tokener = fresh;
	} else {
		json_tokener_reset(js->tokener);
	}
	js->fed = 0;
}

void jstream_reset(struct jstream *js)
{
	message_reset(js);
	buf_clear(&js->tok, IDLE_KEEP);
	js->state = L_START;
}

bool jstream_is_idle(const struct jstream *js)
{
	return js->state == L_START && js->tokens == 0;
}

/* Fill ev with an error whose desc is built like QEMU's error_setg(). */
__attribute__((format(printf, 3, 4))) static int emit_error(struct jstream *js,
							     struct jstream_event *ev,
							     const char *fmt, ...)
{
	va_list ap;
	buf_clear(&js->errtext, IDLE_KEEP);
	va_start(ap, fmt);
	int r = buf_vprintf(&js->errtext, fmt, ap);
	va_end(ap);
	if (r < 0) {
		buf_clear(&js->errtext, 0);
		buf_puts(&js->errtext, "JSON parse error, out of memory");
	}
	ev->value = NULL;
	ev->error = js->errtext.data ? js->errtext.data : "JSON parse error";
	ev->large = is_large(js);
	js->large = false;
	message_reset(js);
	return EVENT;
}

/* ---- token rewriting ---------------------------------------------------- */

/* QEMU's parser formats its message into a 1024-byte buffer, so the part
 * after "JSON parse error, " is cut at 1023 bytes (long keywords are). */
#define PARSE_MSG_MAX 1023

__attribute__((format(printf, 2, 3))) static void defer_error(struct jstream *js,
								const char *fmt, ...)
{
	if (js->has_defer)
		return; /* QEMU reports the first error only */
	js->has_defer = true;
	js->defer_at = js->fed + js->msg.len;
	buf_clear(&js->defer, IDLE_KEEP);
	buf_puts(&js->defer, "JSON parse error, ");
	size_t head = js->defer.len;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&js->defer, fmt, ap);
	va_end(ap);
	if (js->defer.len > head + PARSE_MSG_MAX) {
		js->defer.len = head + PARSE_MSG_MAX;
		js->defer.data[js->defer.len] = '\0';
	}
}

/* Hand the canonical text so far to json-c and forget it.  Once json-c
 * has finished (a value, or an error), the rest of the message is only
 * counted: its verdict stands, as for the whole text. */
static void feed(struct jstream *js)
{
	if (js->msg.len && !js->parsed) {
		struct json_object *o =
			json_tokener_parse_ex(js->tokener, js->msg.data, (int)js->msg.len);
		enum json_tokener_error err = json_tokener_get_error(js->tokener);
		if (err != json_tokener_continue) {
			size_t end = json_tokener_get_parse_end(js->tokener);
			js->parsed = true;
			js->parse_err = err;
			js->parse_at = js->fed + end;
			js->parse_char = end < js->msg.len ? js->msg.data[end] : '\0';
			js->value = o; /* NULL for an error, or for JSON null */
		}
	}
	js->fed += js->msg.len;
	buf_clear(&js->msg, IDLE_KEEP);
}

/* Append canonical text, handing it to json-c whenever enough has built up. */
static int put(struct jstream *js, const char *p, size_t n)
{
	size_t at = js->lim.feed_at;
	while (n) {
		size_t room = at - (js->msg.len < at ? js->msg.len : at);
		size_t k = n < room ? n : room;
		if (k && buf_append(&js->msg, p, k) < 0)
			return -ENOMEM;
		p += k;
		n -= k;
		if (js->msg.len >= at)
			feed(js);
	}
	return 0;
}

static int hex4(const uint8_t *s, size_t n)
{
	if (n < 4)
		return -1;
	int v = 0;
	for (int i = 0; i < 4; i++) {
		int c = s[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v * 16 + d;
	}
	return v;
}

static int put_cp(struct jstream *js, int32_t cp)
{
	char u[8];
	if (cp == '"')
		return put(js, "\\\"", 2);
	if (cp == '\\')
		return put(js, "\\\\", 2);
	if (cp < 0x20) {
		snprintf(u, sizeof(u), "\\u%04x", (unsigned)cp);
		return put(js, u, 6);
	}
	return put(js, u, utf8_encode(u, cp));
}

/* Decode a string token (with its quotes) the way QEMU's parser does.
 * With emit false only check it: remember the first error and return 1.
 * With emit true (a checked token) append the text between the quotes to
 * the canonical text; the caller adds the closing quote. */
static int decode_string(struct jstream *js, bool emit)
{
	const uint8_t *s = (const uint8_t *)js->tok.data;
	size_t end = js->tok.len - 1; /* the closing quote */
	int r = 0;

	for (size_t p = 1; r == 0 && p < end;) {
		int32_t cp;
		if (s[p] != '\\') {
			size_t used;
			cp = utf8_decode(s + p, end - p, &used);
			if (cp < 0)
				goto bad_utf8;
			p += used;
			r = emit ? put_cp(js, cp) : 0;
			continue;
		}
		size_t beg = p++;
		switch (s[p++]) {
		case '"': cp = '"'; break;
		case '\'': cp = '\''; break;
		case '\\': cp = '\\'; break;
		case '/': cp = '/'; break;
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		case 'u':
			cp = hex4(s + p, end - p);
			p += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF && p + 1 < end && s[p] == '\\' &&
			    s[p + 1] == 'u') {
				int lo = hex4(s + p + 2, end - (p + 2));
				if (lo >= 0xDC00 && lo <= 0xDFFF) {
					cp = 0x10000 + ((cp & 0x3FF) << 10) + (lo & 0x3FF);
					p += 6;
				} else {
					cp = -1;
				}
			}
			if (!utf8_is_valid_cp(cp)) {
				size_t n = p - beg;
				if (beg + n > js->tok.len)
					n = js->tok.len - beg;
				defer_error(js, "%.*s is not a valid Unicode character",
					    (int)n, (const char *)s + beg);
				return 1;
			}
			break;
		default:
			defer_error(js, "invalid escape sequence in string");
			return 1;
		}
		r = emit ? put_cp(js, cp) : 0;
	}
	return r;

bad_utf8:
	defer_error(js, "invalid UTF-8 sequence in string");
	return 1;
}

/* QEMU reads an integer as int64, else (if not negative) uint64, else as a
 * double; json-c would saturate instead, so out-of-range ones become
 * doubles here. */
static bool integer_fits(const char *text)
{
	errno = 0;
	(void)strtoll(text, NULL, 10);
	if (errno != ERANGE)
		return true;
	if (text[0] == '-')
		return false;
	errno = 0;
	(void)strtoull(text, NULL, 10);
	return errno != ERANGE;
}

/* Rewrite the token in tok as canonical text, but for its last bytes,
 * which *tail gets: the caller adds them once tok is freed, and only then
 * does json-c build the value (so a big token and its value are never
 * both held, besides json-c's own copy). */
static int rewrite_token(struct jstream *js, enum tok_type type, const char **tail)
{
	const char *t = js->tok.data;
	switch (type) {
	case T_STRING:
		*tail = "\"";
		/* checked first, so that a bad one never reaches json-c half
		 * written (it becomes ""), and its error is placed at its start */
		if (decode_string(js, false))
			return put(js, "\"", 1);
		if (put(js, "\"", 1) < 0)
			return -ENOMEM;
		return decode_string(js, true);
	case T_INTEGER:
		*tail = integer_fits(t) ? " " : ".0 ";
		return put(js, t, js->tok.len);
	case T_FLOAT:
		*tail = " ";
		return put(js, t, js->tok.len);
	case T_KEYWORD:
		*tail = " ";
		if (strcmp(t, "true") && strcmp(t, "false") && strcmp(t, "null")) {
			/* the text is cut at PARSE_MSG_MAX anyway: format no more */
			int n = js->tok.len > PARSE_MSG_MAX ? PARSE_MSG_MAX : (int)js->tok.len;
			defer_error(js, "invalid keyword '%.*s'", n, t);
			return put(js, "null", 4);
		}
		return put(js, t, js->tok.len);
	default:
		*tail = "";
		return put(js, t, js->tok.len);
	}
}

/* ---- parsing a complete message ----------------------------------------- */

static size_t count_members(struct json_object *o)
{
	size_t n = 0;
	if (json_object_is_type(o, json_type_object)) {
		json_object_object_foreach(o, key, val)
		{
			(void)key;
			n += 1 + count_members(val);
		}
	} else if (json_object_is_type(o, json_type_array)) {
		size_t len = json_object_array_length(o);
		for (size_t i = 0; i < len; i++)
			n += count_members(json_object_array_get_idx(o, i));
	}
	return n;
}

static const char *map_jsonc_error(enum json_tokener_error err, char at)
{
	switch (err) {
	case json_tokener_error_parse_object_key_sep:
		return "missing : in object pair";
	case json_tokener_error_parse_object_value_sep:
		return "expected separator in dict";
	case json_tokener_error_parse_array:
		return "expected separator in list";
	case json_tokener_error_parse_object_key_name:
		/* QEMU parses whatever stands in key position, then complains
		 * if it is not a string; punctuation fails as a value first. */
		if (at == '{' || at == '[' || at == '-' || (at >= '0' && at <= '9') || at == 't' ||
		    at == 'f' || at == 'n')
			return "key is not a string in object";
		return "expecting value";
	default:
		return "expecting value";
	}
}

/* json-c errors that mean "the token here is not a valid value", i.e. QEMU
 * would have parsed (and complained about) the token at that position. */
static bool error_parses_token(enum json_tokener_error err)
{
	return err == json_tokener_error_parse_object_key_name ||
	       err == json_tokener_error_parse_unexpected;
}

static int parse_message(struct jstream *js, struct jstream_event *ev)
{
	feed(js);
	if (!js->parsed) { /* json-c wants more: as when the whole text ends early */
		js->parsed = true;
		js->parse_err = json_tokener_continue;
		js->parse_at = js->fed;
		js->parse_char = '\0';
	}
	enum json_tokener_error err = js->parse_err;

	if (err == json_tokener_success) { /* the value is NULL for JSON null */
		struct json_object *o = js->value;
		js->value = NULL;
		if (js->has_defer) {
			json_object_put(o);
			return emit_error(js, ev, "%s", js->defer.data);
		}
		if (count_members(o) != js->colons) {
			json_object_put(o);
			return emit_error(js, ev, "JSON parse error, duplicate key");
		}
		ev->value = o;
		ev->error = NULL;
		ev->large = is_large(js);
		js->large = false;
		message_reset(js);
		return EVENT;
	}

	size_t at = js->parse_at;
	if (js->has_defer &&
	    (js->defer_at < at || (js->defer_at == at && error_parses_token(err))))
		return emit_error(js, ev, "%s", js->defer.data);
	return emit_error(js, ev, "JSON parse error, %s", map_jsonc_error(err, js->parse_char));
}

/* A complete token sits in js->tok: count it the way QEMU 7.2's streamer
 * does.  Its limits are checked before the token is added, even for a
 * token that would complete the message, and "size" counts one byte more
 * than the token.  A message is complete when both counts are zero or
 * either went negative (a stray closer ends it at once). */
static int message_token(struct jstream *js, enum tok_type type, struct jstream_event *ev)
{
	switch (type) {
	case T_LCURLY: js->brace++; break;
	case T_RCURLY: js->brace--; break;
	case T_LSQUARE: js->bracket++; break;
	case T_RSQUARE: js->bracket--; break;
	case T_COLON: js->colons++; break;
	default: break;
	}
	size_t len = js->tok.len;
	int r = 0;
	if (js->size + len + 1 > js->lim.max_size)
		r = emit_error(js, ev, "JSON token size limit exceeded");
	else if (js->tokens + 1 > js->lim.max_tokens)
		r = emit_error(js, ev, "JSON token count limit exceeded");
	else if (js->brace + js->bracket > (long)js->lim.max_depth)
		r = emit_error(js, ev, "JSON nesting depth limit exceeded");
	if (r) {
		buf_clear(&js->tok, IDLE_KEEP);
		js->state = L_START;
		return r;
	}
	js->size += len;
	js->tokens++;
	const char *tail = "";
	int w = rewrite_token(js, type, &tail);
	buf_clear(&js->tok, IDLE_KEEP);
	js->state = L_START;
	if (w >= 0)
		w = put(js, tail, strlen(tail));
	if (w < 0)
		return emit_error(js, ev, "JSON token size limit exceeded"); /* out of memory */
	if ((js->brace > 0 || js->bracket > 0) && js->brace >= 0 && js->bracket >= 0)
		return 0;
	return parse_message(js, ev);
}

/* ---- the lexer ---------------------------------------------------------- */

static int lex_error(struct jstream *js, struct jstream_event *ev)
{
	/* Like QEMU, the text stops at an embedded NUL.  Unlike qemu-ga, which
	 * quotes all of it (a 63 MB token of 0x80 came back as 380 MB of
	 * \uFFFD), at most JSTREAM_QUOTE_MAX bytes are quoted. */
	const char *t = js->tok.data ? js->tok.data : "";
	size_t len = strlen(t), n = utf8_prefix((const uint8_t *)t, len, JSTREAM_QUOTE_MAX);
	int r = emit_error(js, ev, "JSON parse error, stray '%.*s%s'", (int)n, t,
			   n < len ? "..." : "");
	buf_clear(&js->tok, IDLE_KEEP);
	js->state = L_RECOVERY;
	return r;
}

static bool is_structural(uint8_t c)
{
	return c == '{' || c == '}' || c == '[' || c == ']' || c == ':' || c == ',';
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* One lexer step on byte c: returns CONSUMED and/or EVENT. */
static int step(struct jstream *js, uint8_t c, struct jstream_event *ev)
{
	static const enum tok_type structural[256] = {
		['{'] = T_LCURLY, ['}'] = T_RCURLY, ['['] = T_LSQUARE,
		[']'] = T_RSQUARE, [':'] = T_COLON,  [','] = T_COMMA,
	};
	enum lex_state next;

	switch (js->state) {
	case L_RECOVERY:
		if ((c < 0x20 && c != '\t') || c >= 0xFE || is_structural(c)) {
			js->state = L_START;
			return 0;
		}
		return CONSUMED;

	case L_START:
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			return CONSUMED;
		if (buf_putc(&js->tok, (char)c) < 0)
			return CONSUMED | lex_error(js, ev);
		if (is_structural(c))
			return CONSUMED | message_token(js, structural[c], ev);
		if (c == '"')
			next = L_DQ;
		else if (c == '\'')
			next = L_SQ;
		else if (c == '0')
			next = L_ZERO;
		else if (c >= '1' && c <= '9')
			next = L_DIGITS;
		else if (c == '-')
			next = L_SIGN;
		else if (c >= 'a' && c <= 'z')
			next = L_KEYWORD;
		else
			return CONSUMED | lex_error(js, ev);
		js->state = next;
		return CONSUMED;

	case L_DQ:
	case L_SQ:
	case L_DQ_ESC:
	case L_SQ_ESC: {
		bool dq = js->state == L_DQ || js->state == L_DQ_ESC;
		bool esc = js->state == L_DQ_ESC || js->state == L_SQ_ESC;
		int r = buf_putc(&js->tok, (char)c);
		if (c < 0x20 || c >= 0xFE || r < 0)
			return CONSUMED | lex_error(js, ev);
		if (esc)
			js->state = dq ? L_DQ : L_SQ;
		else if (c == '\\')
			js->state = dq ? L_DQ_ESC : L_SQ_ESC;
		else if (c == (dq ? '"' : '\''))
			return CONSUMED | message_token(js, T_STRING, ev);
		return CONSUMED;
	}

	case L_ZERO:
	case L_DIGITS:
	case L_SIGN:
	case L_MANT:
	case L_MANT_DIGITS:
	case L_EXP_E:
	case L_EXP_SIGN:
	case L_EXP_DIGITS: {
		enum lex_state s = js->state;
		bool digit = is_digit(c);
		next = L_START; /* "the number ended before c" */
		if (s == L_ZERO && digit)
			next = L_RECOVERY; /* leading zero: an error */
		else if ((s == L_DIGITS || s == L_MANT_DIGITS || s == L_EXP_DIGITS) && digit)
			next = s;
		else if ((s == L_ZERO || s == L_DIGITS) && c == '.')
			next = L_MANT;
		else if ((s == L_DIGITS || s == L_MANT_DIGITS) && (c == 'e' || c == 'E'))
			next = L_EXP_E;
		else if (s == L_SIGN)
			next = c == '0' ? L_ZERO : digit ? L_DIGITS : L_RECOVERY;
		else if (s == L_MANT)
			next = digit ? L_MANT_DIGITS : L_RECOVERY;
		else if (s == L_EXP_E)
			next = (c == '+' || c == '-') ? L_EXP_SIGN : digit ? L_EXP_DIGITS : L_RECOVERY;
		else if (s == L_EXP_SIGN)
			next = digit ? L_EXP_DIGITS : L_RECOVERY;

		if (next == L_START) /* complete; c is lexed again */
			return message_token(js, (s == L_ZERO || s == L_DIGITS) ? T_INTEGER : T_FLOAT,
					     ev);
		if (buf_putc(&js->tok, (char)c) < 0 || next == L_RECOVERY)
			return CONSUMED | lex_error(js, ev);
		js->state = next;
		return CONSUMED;
	}

	case L_KEYWORD:
		if (c >= 'a' && c <= 'z') {
			if (buf_putc(&js->tok, (char)c) < 0)
				return CONSUMED | lex_error(js, ev);
			return CONSUMED;
		}
		return message_token(js, T_KEYWORD, ev);
	}
	return CONSUMED;
}

/* QEMU's lexer caps a single token at the message size limit too.  The
 * over-long token reaches its streamer, which refuses it by size; lexing
 * goes on from the start state with whatever follows. */
static int token_too_long(struct jstream *js, struct jstream_event *ev)
{
	buf_clear(&js->tok, IDLE_KEEP);
	js->state = L_START;
	js->large = true;
	return emit_error(js, ev, "JSON token size limit exceeded");
}

int jstream_feed(struct jstream *js, const char **data, size_t *len, struct jstream_event *ev)
{
	ev->value = NULL;
	ev->error = NULL;
	ev->large = false;
	while (*len) {
		int r = step(js, (uint8_t)**data, ev);
		if (r & CONSUMED) {
			(*data)++;
			(*len)--;
		}
		if (r & EVENT)
			return 1;
		if (js->tok.len > js->lim.max_size && token_too_long(js, ev))
			return 1;
	}
	return 0;
}
