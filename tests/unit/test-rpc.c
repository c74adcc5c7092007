// SPDX-License-Identifier: MIT
/*
 * Unit tests for the dispatcher, argument checking and each command's
 * output: bytes in, exact reply bytes out, through jstream and rpc exactly
 * as the agent's loop does.  Side-effecting commands (guest-shutdown) are
 * only called with arguments that fail before anything runs.
 */
#include "agent.h"
#include "commands.h"
#include "jstream.h"
#include "jwrite.h"
#include "rpc.h"
#include "tap.h"
#include "rpc-exchange.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <unistd.h>


/* Run a command and parse its "return" value (the caller frees). */
static struct json_object *call(struct agent *a, const char *in)
{
	char *got = exchange(a, in);
	struct json_object *reply = json_tokener_parse(got), *ret = NULL;
	if (!reply || !json_object_object_get_ex(reply, "return", &ret))
		printf("# unexpected reply to %s: %s\n", in, got);
	ret = json_object_get(ret);
	json_object_put(reply);
	free(got);
	return ret;
}

#define E_GEN "{\"error\": {\"class\": \"GenericError\", \"desc\": \""
#define E_GEN_ID(id) "{\"id\": " id ", \"error\": {\"class\": \"GenericError\", \"desc\": \""

static void test_protocol(void)
{
	struct agent a = {0};
	check(&a, "{\"execute\":\"guest-ping\"}", "{\"return\": {}}\n");
	check(&a, "{\"execute\":\"guest-ping\",\"id\":[1,{\"b\":2,\"a\":null}]}",
	      "{\"return\": {}, \"id\": [1, {\"a\": null, \"b\": 2}]}\n"); /* QDict order */
	check(&a, "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":5}}", "{\"return\": 5}\n");
	check(&a, "{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":7}}",
	      "\xff{\"return\": 7}\n");
	check(&a, "{\"execute\":\"guest-sync-delimited\"}{\"execute\":\"guest-ping\"}",
	      E_GEN "Parameter 'id' is missing\"}}\n{\"return\": {}}\n");
	check(&a, "{\"execute\":\"nope\",\"id\":\"x\"}",
	      "{\"id\": \"x\", \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command "
	      "nope has not been found\"}}\n");
	check(&a, "[1] ", E_GEN "QMP input must be a JSON object\"}}\n");
	check(&a, "{\"execute\":1,\"id\":2}", E_GEN_ID("2") "QMP input member 'execute' must be a string\"}}\n");
	check(&a, "{\"arguments\":{}}", E_GEN "QMP input lacks member 'execute'\"}}\n");
	check(&a, "{\"execute\":\"guest-ping\",\"arguments\":[]}",
	      E_GEN "QMP input member 'arguments' must be an object\"}}\n");
	check(&a, "{\"execute\":\"guest-ping\",\"exec-oob\":1}",
	      E_GEN "QMP input member 'exec-oob' is unexpected\"}}\n");
	check(&a, "{\"execute\":\"guest-ping\",\"arguments\":{\"foo\":42}}",
	      E_GEN "Parameter 'foo' is unexpected\"}}\n");
	check(&a, "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":\"x\"}}",
	      E_GEN "Invalid parameter type for 'id', expected: integer\"}}\n");
	check(&a, "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":9223372036854775808}}",
	      E_GEN "Invalid parameter type for 'id', expected: integer\"}}\n");
	check(&a, "{\"execute\":\"guest-sync\",\"arguments\":{\"z\":1,\"id\":\"x\"}}",
	      E_GEN "Invalid parameter type for 'id', expected: integer\"}}\n");
	check(&a, "{\"execute\":\"guest-shutdown\",\"arguments\":{\"mode\":\"foo\"}}",
	      E_GEN "mode is invalid (valid values are: halt|powerdown|reboot\"}}\n");
	check(&a, "{\"execute\":\"guest-shutdown\",\"arguments\":{\"mode\":1}}",
	      E_GEN "Invalid parameter type for 'mode', expected: string\"}}\n");
	check(&a, "\xff{\"execute\":\"guest-ping\"}",
	      E_GEN "JSON parse error, stray '\\uFFFD'\"}}\n{\"return\": {}}\n");
	check(&a, "{\"execute\":\"guest-ping\",\"id\":\"h\xc3\xa9\x7f\"}",
	      "{\"return\": {}, \"id\": \"h\\u00E9\\u007F\"}\n");
}

static void test_enabled(void)
{
	struct agent a = {0};
	strlist_add(&a.blocked, "guest-ping");
	check(&a, "{\"execute\":\"guest-ping\",\"id\":3}",
	      "{\"id\": 3, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Command guest-ping "
	      "has been disabled\"}}\n");
	check(&a, "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":1}}", "{\"return\": 1}\n");
	strlist_free(&a.blocked);

	strlist_add(&a.allowed, "guest-sync");
	check(&a, "{\"execute\":\"guest-get-time\"}",
	      "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Command guest-get-time has "
	      "been disabled\"}}\n");
	strlist_free(&a.allowed);

	a.freezer.frozen = true;
	check(&a, "{\"execute\":\"guest-ping\"}", "{\"return\": {}}\n");
	check(&a, "{\"execute\":\"guest-get-time\"}",
	      "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Command guest-get-time has "
	      "been disabled: the agent is in frozen state\"}}\n");
	struct json_object *info = call(&a, "{\"execute\":\"guest-info\"}"), *cmds, *v;
	json_object_object_get_ex(info, "supported_commands", &cmds);
	size_t enabled = 0;
	for (size_t i = 0; i < json_object_array_length(cmds); i++) {
		json_object_object_get_ex(json_object_array_get_idx(cmds, i), "enabled", &v);
		enabled += json_object_get_boolean(v);
	}
	ok(enabled == 7, "while frozen guest-info shows only the 6 qemu-ga safe commands + report (%zu)",
	   enabled);
	json_object_put(info);
}

static bool has(struct json_object *o, const char *key, enum json_type t)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, t);
}

static void test_commands(void)
{
	struct agent a = {0};
	struct json_object *r;

	r = call(&a, "{\"execute\":\"guest-info\"}");
	struct json_object *cmds = NULL;
	ok(has(r, "version", json_type_string) && json_object_object_get_ex(r, "supported_commands", &cmds) &&
		   json_object_array_length(cmds) == rpc_command_count,
	   "guest-info lists every command");
	bool shutdown_no_reply = false;
	for (size_t i = 0; cmds && i < json_object_array_length(cmds); i++) {
		struct json_object *c = json_object_array_get_idx(cmds, i), *n, *s;
		json_object_object_get_ex(c, "name", &n);
		json_object_object_get_ex(c, "success-response", &s);
		if (!strcmp(json_object_get_string(n), "guest-shutdown"))
			shutdown_no_reply = !json_object_get_boolean(s);
	}
	ok(shutdown_no_reply, "guest-info: guest-shutdown has success-response false");
	json_object_put(r);

	r = call(&a, "{\"execute\":\"guest-get-time\"}");
	ok(json_object_is_type(r, json_type_int) && json_object_get_int64(r) > 1600000000000000000LL &&
		   json_object_get_int64(r) % 1000 == 0,
	   "guest-get-time: nanoseconds, microsecond resolution");
	json_object_put(r);

	r = call(&a, "{\"execute\":\"guest-get-host-name\"}");
	ok(has(r, "host-name", json_type_string), "guest-get-host-name");
	json_object_put(r);

	r = call(&a, "{\"execute\":\"guest-get-timezone\"}");
	ok(has(r, "offset", json_type_int), "guest-get-timezone has an offset");
	json_object_put(r);

	r = call(&a, "{\"execute\":\"guest-get-users\"}");
	ok(json_object_is_type(r, json_type_array), "guest-get-users is a list");
	json_object_put(r);

	r = call(&a, "{\"execute\":\"guest-get-vcpus\"}");
	ok(json_object_is_type(r, json_type_array) && json_object_array_length(r) >= 1 &&
		   has(json_object_array_get_idx(r, 0), "logical-id", json_type_int) &&
		   has(json_object_array_get_idx(r, 0), "can-offline", json_type_boolean),
	   "guest-get-vcpus lists CPUs");
	json_object_put(r);

	r = call(&a, "{\"execute\":\"guest-network-get-interfaces\"}");
	bool lo = false;
	for (size_t i = 0; r && i < json_object_array_length(r); i++) {
		struct json_object *n;
		json_object_object_get_ex(json_object_array_get_idx(r, i), "name", &n);
		lo |= !strcmp(json_object_get_string(n), "lo");
	}
	ok(lo, "guest-network-get-interfaces includes lo");
	json_object_put(r);

	r = call(&a, "{\"execute\":\"guest-get-disks\"}");
	ok(json_object_is_type(r, json_type_array), "guest-get-disks is a list");
	json_object_put(r);

	char path[] = "/tmp/test-osrelease-XXXXXX";
	int fd = mkstemp(path);
	const char *text = "NAME=\"Test OS\"\nID=test\nVERSION='1 (x)'\nVARIANT=\"a\\\"b\\\\c\"\n"
			   "# comment\nPRETTY_NAME=plain\n";
	ok(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write os-release");
	close(fd);
	a.os_release = path;
	char *got = exchange(&a, "{\"execute\":\"guest-get-osinfo\"}");
	r = json_tokener_parse(got);
	struct json_object *ret = NULL, *v;
	json_object_object_get_ex(r, "return", &ret);
	ok(json_object_object_get_ex(ret, "name", &v) && !strcmp(json_object_get_string(v), "Test OS"),
	   "osinfo: double quotes removed");
	ok(json_object_object_get_ex(ret, "version", &v) && !strcmp(json_object_get_string(v), "1 (x)"),
	   "osinfo: single quotes removed");
	ok(json_object_object_get_ex(ret, "variant", &v) && !strcmp(json_object_get_string(v), "a\"b\\c"),
	   "osinfo: backslash escapes undone");
	ok(has(ret, "kernel-release", json_type_string) && has(ret, "machine", json_type_string),
	   "osinfo: uname fields");
	json_object_put(r);
	free(got);
	unlink(path);
}

/* Quoted client input is cut at JSTREAM_QUOTE_MAX bytes, between
 * characters, and marked "..." (docs/compat.md); shorter names are quoted
 * as before. */
static void test_quotes_are_capped(void)
{
	struct agent a = {0};
	char name[JSTREAM_QUOTE_MAX + 2], cut[JSTREAM_QUOTE_MAX + 1];
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	memcpy(cut, name, JSTREAM_QUOTE_MAX);
	cut[JSTREAM_QUOTE_MAX] = '\0';
	struct buf in = BUF_INIT, want = BUF_INIT;

	buf_printf(&in, "{\"execute\":\"%s\"}", name);
	buf_printf(&want, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command %s... "
			  "has not been found\"}}\n", cut);
	check(&a, in.data, want.data);

	buf_clear(&in, 0);
	buf_clear(&want, 0);
	buf_printf(&in, "{\"execute\":\"%s\"}", cut);
	buf_printf(&want, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command %s "
			  "has not been found\"}}\n", cut);
	check(&a, in.data, want.data);

	buf_clear(&in, 0);
	buf_clear(&want, 0);
	buf_printf(&in, "{\"execute\":\"guest-ping\",\"%s\":1}", name);
	buf_printf(&want, E_GEN "QMP input member '%s...' is unexpected\"}}\n", cut);
	check(&a, in.data, want.data);

	buf_clear(&in, 0);
	buf_clear(&want, 0);
	buf_printf(&in, "{\"execute\":\"guest-ping\",\"arguments\":{\"%s\":1}}", name);
	buf_printf(&want, E_GEN "Parameter '%s...' is unexpected\"}}\n", cut);
	check(&a, in.data, want.data);

	/* U+0000 still quoted as \u0000; a 2-byte character is never split */
	buf_clear(&in, 0);
	buf_clear(&want, 0);
	buf_puts(&in, "{\"execute\":\"x\\u0000");
	buf_puts(&want, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command x\\u0000");
	for (size_t i = 0; i < JSTREAM_QUOTE_MAX; i++)
		buf_puts(&in, "\\u00e9");
	for (size_t i = 0; i < (JSTREAM_QUOTE_MAX - 2) / 2; i++)
		buf_puts(&want, "\\u00E9");
	buf_puts(&in, "\"}");
	buf_puts(&want, "... has not been found\"}}\n");
	check(&a, in.data, want.data);
	buf_free(&in);
	buf_free(&want);
}

/* Keys with one g_str_hash: "aB" and "b!" hash alike, and so do all
 * strings of such pairs. */
static void colliding_request(struct buf *in, size_t n, size_t bits)
{
	buf_puts(in, "{\"execute\":\"guest-ping\",\"arguments\":{");
	for (size_t i = 0; i < n; i++) {
		buf_puts(in, i ? ",\"" : "\"");
		for (size_t j = 0; j < bits; j++)
			buf_puts(in, (i >> j) & 1 ? "b!" : "aB");
		buf_puts(in, "\":0");
	}
	buf_puts(in, "}}");
}

static void test_colliding_keys(void)
{
	struct agent a = {0};
	struct buf in = BUF_INIT;
	/* Within the probe budget the GLib order is modelled exactly: 8 keys
	 * that all collide, as qemu-ga 7.2 names them (probed). */
	colliding_request(&in, 8, 3);
	char *got = exchange(&a, in.data);
	ok(strstr(got, "Parameter '") && strstr(got, "' is unexpected"), "8 colliding keys: %s", got);
	free(got);

	/* 65536 colliding keys run out of the budget (the model would take
	 * about 2^31 probes): the first unexpected key in QDict order is named. */
	buf_clear(&in, 0);
	colliding_request(&in, 65536, 16);
	struct json_object *req = json_tokener_parse(in.data), *args;
	json_object_object_get_ex(req, "arguments", &args);
	size_t n;
	const char **keys = jwrite_qdict_keys(args, &n);
	struct buf want = BUF_INIT;
	buf_printf(&want, E_GEN "Parameter '%s' is unexpected\"}}\n", n ? keys[0] : "?");
	check(&a, in.data, want.data);
	free(keys);
	json_object_put(req);
	buf_free(&want);
	buf_free(&in);
}

int main(void)
{
	test_quotes_are_capped();
	test_colliding_keys();
	test_protocol();
	test_enabled();
	test_commands();
	return tap_done();
}
