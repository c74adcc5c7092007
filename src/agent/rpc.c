// SPDX-License-Identifier: MIT
/*
 * rpc: validate, dispatch and answer one QGA message (see rpc.h).
 *
 * Replies are built as json-c trees and rendered with jwrite, with the
 * member order qemu-ga shows in practice: {"return": R, "id": I} and
 * {"id": I, "error": {"class": C, "desc": D}}.  "id" is echoed verbatim on
 * every reply to a message that parsed as an object, and never otherwise.
 *
 * Errors that quote client input (an unknown command's name, an unexpected
 * member) quote at most JSTREAM_QUOTE_MAX bytes of it, then "...": qemu-ga
 * quotes it whole, so one message could cost several times the message
 * limit to answer (docs/compat.md).  Names of normal length are quoted
 * exactly as qemu-ga does.
 */
#include "rpc.h"

#include "agent.h"
#include "jstream.h"
#include "jwrite.h"
#include "log.h"
#include "utf8.h"

#include <json-c/json.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct rpc_command *rpc_find(const char *name)
{
	for (size_t i = 0; i < rpc_command_count; i++)
		if (!strcmp(rpc_commands[i]->name, name))
			return rpc_commands[i];
	return NULL;
}

bool rpc_is_enabled(const struct agent *a, const struct rpc_command *cmd, const char **reason)
{
	*reason = NULL;
	/* Priority as in qemu-ga: frozen beats the admin's lists. */
	if (agent_is_frozen(a)) {
		*reason = "the agent is in frozen state";
		return cmd->flags & RPC_FROZEN_SAFE;
	}
	if (strlist_has(&a->blocked, cmd->name))
		return false;
	if (a->allowed.n && !strlist_has(&a->allowed, cmd->name))
		return false;
	return true;
}

/* The request's "id", which may be JSON null (a NULL json_object). */
struct req_id {
	bool present;
	struct json_object *value;
};

static const struct req_id no_id = {false, NULL};

static void put_reply(struct agent *a, struct buf *out, struct req_id id,
		      struct json_object *ret, const char *cls, const char *desc)
{
	size_t start = out->len;
	int r = 0;
	if (a->delimit_next && !cls) {
		/* guest-sync-delimited: one 0xFF right before its own reply */
		r = buf_putc(out, (char)0xFF);
	}
	a->delimit_next = false;
	if (!cls) {
		r = r ? r : buf_puts(out, "{\"return\": ");
		r = r ? r : (ret ? jwrite(out, ret) : buf_puts(out, "{}"));
		if (id.present && !r) {
			r = buf_puts(out, ", \"id\": ");
			r = r ? r : jwrite(out, id.value);
		}
	} else {
		r = buf_putc(out, '{');
		if (id.present && !r) {
			r = buf_puts(out, "\"id\": ");
			r = r ? r : jwrite(out, id.value);
			r = r ? r : buf_puts(out, ", ");
		}
		r = r ? r : buf_puts(out, "\"error\": {\"class\": ");
		r = r ? r : jwrite_string(out, cls, strlen(cls));
		r = r ? r : buf_puts(out, ", \"desc\": ");
		r = r ? r : jwrite_string(out, desc, strlen(desc));
		r = r ? r : buf_putc(out, '}');
	}
	r = r ? r : buf_puts(out, "}\n");
	if (r) {
		/* Out of memory while rendering: say so rather than send half. */
		out->len = start;
		buf_puts(out, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"out of memory\"}}\n");
	}
}

__attribute__((format(printf, 5, 6))) static void put_error(struct agent *a, struct buf *out,
							    struct req_id id, const char *cls,
							    const char *fmt, ...)
{
	struct buf desc = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	int r = buf_vprintf(&desc, fmt, ap);
	va_end(ap);
	put_reply(a, out, id, NULL, cls, r ? "out of memory" : desc.data);
	buf_free(&desc);
}

/* Client input s[0..len) for quoting in an error: its first
 * JSTREAM_QUOTE_MAX bytes (whole characters), then "..." if there was more;
 * U+0000 as modified UTF-8 (C0 80), as QEMU keeps it, so it is echoed as
 * \u0000 instead of cutting the text short.  The caller frees the result. */
static char *quotable(const char *s, size_t len)
{
	size_t keep = utf8_prefix((const uint8_t *)s, len, JSTREAM_QUOTE_MAX), n = 0;
	char *q = malloc(2 * keep + 4);
	if (!q)
		return NULL;
	for (size_t i = 0; i < keep; i++) {
		if (s[i]) {
			q[n++] = s[i];
		} else {
			q[n++] = (char)0xC0;
			q[n++] = (char)0x80;
		}
	}
	if (keep < len) {
		memcpy(q + n, "...", 3);
		n += 3;
	}
	q[n] = '\0';
	return q;
}

/* qemu-ga's check of the top-level members, in its (QDict) order, since
 * that decides which of several problems is reported.  Returns the
 * "execute" value, or NULL after writing the error. */
static struct json_object *check_request(struct agent *a, struct json_object *req,
					 struct req_id id, struct buf *out)
{
	struct json_object *exec = NULL;
	size_t n;
	const char **keys = jwrite_qdict_keys(req, &n);
	for (size_t i = 0; i < n; i++) {
		struct json_object *val = json_object_object_get(req, keys[i]);
		const char *problem = NULL;
		if (!strcmp(keys[i], "execute")) {
			if (json_object_is_type(val, json_type_string))
				exec = val;
			else
				problem = "QMP input member 'execute' must be a string";
		} else if (!strcmp(keys[i], "arguments")) {
			if (!json_object_is_type(val, json_type_object))
				problem = "QMP input member 'arguments' must be an object";
		} else if (strcmp(keys[i], "id")) {
			char *q = quotable(keys[i], strlen(keys[i]));
			put_error(a, out, id, "GenericError", "QMP input member '%s' is unexpected",
				  q ? q : "");
			free(q);
			free(keys);
			return NULL;
		}
		if (problem) {
			put_error(a, out, id, "GenericError", "%s", problem);
			free(keys);
			return NULL;
		}
	}
	free(keys);
	if (!exec)
		put_error(a, out, id, "GenericError", "QMP input lacks member 'execute'");
	return exec;
}

static void dispatch(struct agent *a, struct json_object *req, struct buf *out)
{
	if (!json_object_is_type(req, json_type_object)) {
		put_error(a, out, no_id, "GenericError", "QMP input must be a JSON object");
		return;
	}
	struct req_id id = {false, NULL};
	id.present = json_object_object_get_ex(req, "id", &id.value);
	struct json_object *exec = check_request(a, req, id, out);
	if (!exec)
		return;

	const char *name = json_object_get_string(exec);
	const struct rpc_command *cmd = NULL;
	if (strlen(name) == (size_t)json_object_get_string_len(exec))
		cmd = rpc_find(name);
	if (!cmd) {
		char *q = quotable(name, (size_t)json_object_get_string_len(exec));
		put_error(a, out, id, "CommandNotFound", "The command %s has not been found",
			  q ? q : "");
		free(q);
		return;
	}
	const char *reason;
	if (!rpc_is_enabled(a, cmd, &reason)) {
		put_error(a, out, id, "CommandNotFound", "Command %s has been disabled%s%s", name,
			  reason ? ": " : "", reason ? reason : "");
		return;
	}

	struct json_object *args = NULL;
	json_object_object_get_ex(req, "arguments", &args);
	struct json_object *empty = args ? NULL : json_object_new_object();
	struct err e = {0};
	struct json_object *ret = NULL;
	int r = args_check(cmd->args, args ? args : empty, &e);
	if (r == 0) {
		log_debug("running %s", name);
		r = cmd->fn(a, args ? args : empty, &ret, &e);
	}
	json_object_put(empty);
	if (r < 0)
		put_error(a, out, id, "GenericError", "%s", e.msg);
	else if (!(cmd->flags & RPC_NO_SUCCESS_RESPONSE))
		put_reply(a, out, id, ret, NULL, NULL);
	json_object_put(ret);
}

void rpc_handle(struct agent *a, const struct jstream_event *ev, struct buf *out)
{
	if (ev->error) {
		log_debug("bad input: %s", ev->error);
		put_reply(a, out, no_id, NULL, "GenericError", ev->error);
	} else {
		dispatch(a, ev->value, out);
		json_object_put(ev->value);
	}
	/* A hostile message can leave many freed small blocks on the heap;
	 * hand them back so the agent returns to its idle footprint. */
	if (ev->large)
		malloc_trim(0);
}
