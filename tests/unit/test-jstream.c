// SPDX-License-Identifier: MIT
/*
 * Unit tests for jstream: framing, recovery and error texts.  Each case is
 * the byte stream and the events it must produce, rendered as V[json] or
 * E[desc]; the expected texts are what qemu-ga 7.2 answers (see the
 * conformance suite for the live comparison).  Every case is also fed one
 * byte at a time, which must give the same events.
 */
#include "jstream.h"
#include "jwrite.h"
#include "tap.h"

#include <json-c/json.h>
#include <stdlib.h>

static const struct {
	const char *in;
	size_t len; /* 0: strlen */
	const char *want;
} cases[] = {
	{"{'execute':'guest-ping'}", 0, "V[{\"execute\": \"guest-ping\"}]"},
	{"{\"a\":1} {\"b\":[1,2.5]}", 0, "V[{\"a\": 1}]V[{\"b\": [1, 2.5]}]"},
	{" \t\r\n{ \"a\" :\n1 }", 0, "V[{\"a\": 1}]"},
	{"\xff", 0, "E[JSON parse error, stray '\xff']"},
	{"\xff\xff", 0, "E[JSON parse error, stray '\xff']E[JSON parse error, stray '\xff']"},
	{"{\"execute\":\"gu\xff" "est\"}", 0,
	 "E[JSON parse error, stray '\"gu\xff']E[JSON parse error, expecting value]"},
	{"{\"a\":1\xff{\"b\":2}", 0, "E[JSON parse error, stray '\xff']V[{\"b\": 2}]"},
	{"42 ", 0, "V[42]"},
	{"\"x\" ", 0, "V[\"x\"]"},
	{"null ", 0, "V[null]"},
	{"{\"a\":null}", 0, "V[{\"a\": null}]"},
	{"}", 0, "E[JSON parse error, expecting value]"},
	{"{\"a\" 1}", 0, "E[JSON parse error, missing : in object pair]"},
	{"{1:2}", 0, "E[JSON parse error, key is not a string in object]"},
	{"{\"a\":1 \"b\":2}", 0, "E[JSON parse error, expected separator in dict]"},
	{"[1 2]", 0, "E[JSON parse error, expected separator in list]"},
	{"{\"a\":tru}", 0, "E[JSON parse error, invalid keyword 'tru']"},
	{"{\"a\" tru}", 0, "E[JSON parse error, missing : in object pair]"},
	{"{\"a\":\"\\x\"}", 0, "E[JSON parse error, invalid escape sequence in string]"},
	{"{\"a\":1,}", 0, "E[JSON parse error, expecting value]"},
	{"{\"a\":01}", 0,
	 "E[JSON parse error, stray '01']E[JSON parse error, expecting value]"},
	{"{\"a\":1,\"a\":2}", 0, "E[JSON parse error, duplicate key]"},
	{"{\"a\":{\"b\":1,\"b\":2}}", 0, "E[JSON parse error, duplicate key]"},
	{"{\"a\":\"\\ud800\"}", 0, "E[JSON parse error, \\ud800 is not a valid Unicode character]"},
	{"{\"a\":\"\\u12G4\"}", 0, "E[JSON parse error, \\u12G4 is not a valid Unicode character]"},
	{"{\"a\":\"\\ud83d\\ude00\\u0000\"}", 0, "V[{\"a\": \"\\uD83D\\uDE00\\u0000\"}]"},
	{"{\"a\":\"\xc3\"}", 0, "E[JSON parse error, invalid UTF-8 sequence in string]"},
	{"{\"a\":\"\t\"}", 0,
	 "E[JSON parse error, stray '\"\t']E[JSON parse error, expecting value]"},
	{"{\"a\":-0,\"b\":1E5,\"c\":0.1}", 0, "V[{\"a\": 0, \"b\": 100000, \"c\": 0.10000000000000001}]"},
	{"{\"a\":18446744073709551616}", 0, "V[{\"a\": 1.8446744073709552e+19}]"},
	{"{\"a\":9223372036854775808}", 0, "V[{\"a\": 9223372036854775808}]"},
	{"{\"a\":-9223372036854775809}", 0, "V[{\"a\": -9.2233720368547758e+18}]"},
	{"{'a':'x\\'y\"z'}", 0, "V[{\"a\": \"x'y\\\"z\"}]"},
	{"/* c */ {}", 0, "E[JSON parse error, stray '/']V[{}]"},
	{"TRUE ", 0, "E[JSON parse error, stray 'T']"},
	{"-a", 0, "E[JSON parse error, stray '-a']"},
	{"\x00{}", 3, "E[JSON parse error, stray '']V[{}]"},
	{"{\"a\":[}", 0, ""},
	{"{\"a\":[}]", 0, "E[JSON parse error, expecting value]"},
	{"{\"a\":1]", 0, "E[JSON parse error, expected separator in dict]"},
	{"[}", 0, "E[JSON parse error, expecting value]"},
};

static size_t feed_at; /* 0: jstream's default */

static char *render(const char *in, size_t len, bool bytewise, bool *idle)
{
	struct jstream_limits lim = JSTREAM_QEMU_LIMITS;
	lim.feed_at = feed_at;
	struct jstream *js = jstream_new(&lim);
	struct buf out = BUF_INIT;
	struct jstream_event ev;
	for (size_t i = 0; i < len;) {
		size_t chunk = bytewise ? 1 : len - i;
		const char *p = in + i;
		size_t n = chunk;
		while (jstream_feed(js, &p, &n, &ev)) {
			if (!ev.error) {
				buf_puts(&out, "V[");
				jwrite(&out, ev.value);
				json_object_put(ev.value);
			} else {
				buf_puts(&out, "E[");
				buf_puts(&out, ev.error);
			}
			buf_putc(&out, ']');
		}
		i += chunk;
	}
	*idle = jstream_is_idle(js);
	jstream_free(js);
	buf_putc(&out, '\0');
	return out.data;
}

static void test_limits(void)
{
	struct jstream_limits lim = {64, 8, 3};
	struct jstream *js = jstream_new(&lim);
	struct jstream_event ev;
	const char *deep = "[[[[1]]]]";
	const char *p = deep;
	size_t n = strlen(p);
	ok(jstream_feed(js, &p, &n, &ev) && ev.error &&
		   !strcmp(ev.error, "JSON nesting depth limit exceeded"),
	   "nesting limit gives qemu-ga's error");
	jstream_reset(js);
	const char *many = "[1,2,3,4,5,6,7,8,9]";
	p = many, n = strlen(p);
	ok(jstream_feed(js, &p, &n, &ev) && ev.error &&
		   !strcmp(ev.error, "JSON token count limit exceeded"),
	   "token count limit gives qemu-ga's error");
	jstream_reset(js);
	const char *big = "[\"0123456789012345678901234567890123456789\",\"0123456789012345678901234567890123456789\"]";
	p = big, n = strlen(p);
	ok(jstream_feed(js, &p, &n, &ev) && ev.error &&
		   !strcmp(ev.error, "JSON token size limit exceeded"),
	   "size limit gives qemu-ga's error");
	jstream_reset(js);
	const char *good = "{\"execute\":\"x\"}";
	p = good, n = strlen(p);
	ok(jstream_feed(js, &p, &n, &ev) && !ev.error && ev.value, "a message after the limits parses");
	json_object_put(ev.value);
	jstream_free(js);
}

/* The first event for in[0..len), rendered as render() does. */
static char *first_event(const char *in, size_t len)
{
	bool idle;
	char *all = render(in, len, false, &idle);
	char *end = strstr(all, "]E[");
	if (!end)
		end = strstr(all, "]V[");
	if (end)
		end[1] = '\0';
	return all;
}

/* A stray token is quoted up to JSTREAM_QUOTE_MAX bytes, cut between
 * characters and marked "..."; qemu-ga quotes it whole (docs/compat.md). */
static void test_stray_quote_is_capped(void)
{
	size_t max = JSTREAM_QUOTE_MAX;
	struct buf in = BUF_INIT, want = BUF_INIT;

	/* exactly max bytes of token (the newline that ends it is part of it,
	 * as in qemu-ga's stray '"\t'): quoted whole */
	buf_putc(&in, '"');
	for (size_t i = 2; i < max; i++)
		buf_putc(&in, 'a');
	buf_putc(&in, '\n');
	buf_puts(&want, "E[JSON parse error, stray '");
	buf_append(&want, in.data, in.len);
	buf_puts(&want, "']");
	char *got = first_event(in.data, in.len);
	is_str(got, want.data, "a stray token of JSTREAM_QUOTE_MAX bytes is quoted whole");
	free(got);

	/* one more byte: cut, with "..." */
	in.len--;
	buf_puts(&in, "b\n");
	got = first_event(in.data, in.len);
	want.len -= 3;
	buf_puts(&want, "b...']");
	is_str(got, want.data, "one byte more is cut at JSTREAM_QUOTE_MAX bytes, then ...");
	free(got);

	/* never inside a character: 2-byte 'é' from byte 1 cannot end at byte 256 */
	buf_clear(&in, 0);
	buf_clear(&want, 0);
	buf_putc(&in, '"');
	for (size_t i = 0; i < max; i++)
		buf_puts(&in, "\xc3\xa9");
	buf_puts(&want, "E[JSON parse error, stray '\"");
	for (size_t i = 0; i < (max - 1) / 2; i++)
		buf_puts(&want, "\xc3\xa9");
	buf_puts(&want, "...']");
	buf_putc(&in, '\n');
	got = first_event(in.data, in.len);
	is_str(got, want.data, "the cut falls between characters");
	free(got);

	/* 4 MiB of 0x80: the reply names 256 bytes of it, and the lexer is
	 * clean afterwards */
	buf_clear(&in, 0);
	buf_putc(&in, '"');
	for (size_t i = 0; i < (4u << 20); i++)
		buf_putc(&in, (char)0x80);
	buf_puts(&in, "\n{}");
	bool idle;
	got = render(in.data, in.len, false, &idle);
	ok(strlen(got) == strlen("E[JSON parse error, stray '']V[{}]") + max + 3 && idle,
	   "a 4 MiB stray token gives a %zu-byte event, then the next message", strlen(got));
	free(got);
	buf_free(&in);
	buf_free(&want);
}

int main(void)
{
	test_stray_quote_is_capped();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
		bool idle;
		char *whole = render(cases[i].in, len, false, &idle);
		char name[128];
		snprintf(name, sizeof(name), "case %zu whole", i);
		is_str(whole, cases[i].want, name);
		char *bytes = render(cases[i].in, len, true, &idle);
		snprintf(name, sizeof(name), "case %zu byte by byte", i);
		is_str(bytes, cases[i].want, name);
		free(whole);
		free(bytes);
		/* json-c gets the canonical text in pieces: any split must give
		 * the same verdict and the same error position as the whole */
		static const size_t splits[] = {1, 2, 3, 7};
		for (size_t k = 0; k < sizeof(splits) / sizeof(splits[0]); k++) {
			feed_at = splits[k];
			char *split = render(cases[i].in, len, false, &idle);
			snprintf(name, sizeof(name), "case %zu fed to json-c %zu bytes at a time", i,
				 feed_at);
			is_str(split, cases[i].want, name);
			free(split);
		}
		feed_at = 0;
	}
	test_limits();
	return tap_done();
}
