// SPDX-License-Identifier: MIT
/* qmpc: QMP client (see qmpc.h). */
#include "qmpc.h"

#include "fault.h"
#include "jsock.h"
#include "xerr.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_QUEUED_EVENTS 1024
/* query-block nests each backing image inside the one above it: depth is
 * the chain's length plus a few.  Chains of hundreds of snapshots exist.
 * json-c's parser keeps its stack on the heap, but freeing a value recurses
 * once per level, so the bound stays well inside a thread's stack. */
#define QMP_MAX_DEPTH 2048

struct qmpc {
	struct jsock *s;
	json_object *events; /* array, oldest first */
	unsigned long next_id;
};

static void keep_event(struct qmpc *q, json_object *o)
{
	if (json_object_array_length(q->events) >= MAX_QUEUED_EVENTS)
		json_object_array_del_idx(q->events, 0, 1); /* a chatty VM must not grow us */
	json_object_array_add(q->events, o);
}

int qmpc_connect(const char *path, int timeout_ms, struct qmpc **out, struct err *e)
{
	struct qmpc *q = calloc(1, sizeof(*q));
	if (!q)
		return xerr(e, QX_FAIL, "out of memory");
	q->events = json_object_new_array();
	int64_t deadline = jsock_now_ms() + timeout_ms;
	json_object *greet = NULL;
	int rc = jsock_connect(path, QMP_MAX_DEPTH, deadline, &q->s, e);
	if (rc == 0 && (rc = jsock_recv(q->s, deadline, &greet, e)) < 0 && strstr(e->msg, "no answer in time")) {
		e->code = 0;
		xerr(e, QX_SOURCE, "no QMP greeting from %s within %d ms (a QEMU monitor serves one client at a time: is another one connected?)",
		     path, timeout_ms);
	}
	if (rc == 0 && !json_object_object_get_ex(greet, "QMP", NULL))
		rc = xerr(e, QX_SOURCE, "%s is not a QMP socket (no greeting)", path);
	json_object_put(greet);
	*out = q;
	if (rc == 0)
		rc = qmpc_execute(q, "qmp_capabilities", NULL, timeout_ms, NULL, e);
	if (rc < 0) {
		qmpc_close(q);
		*out = NULL;
		if (e->code == QX_FAIL)
			e->code = QX_SOURCE;
		return -QX_SOURCE;
	}
	return 0;
}

void qmpc_close(struct qmpc *q)
{
	if (!q)
		return;
	jsock_close(q->s);
	json_object_put(q->events);
	free(q);
}

int qmpc_execute(struct qmpc *q, const char *cmd, json_object *args, int timeout_ms, json_object **ret,
		 struct err *e)
{
	int64_t deadline = jsock_now_ms() + timeout_ms;
	char id[32];
	snprintf(id, sizeof(id), "quiesce-%lu", ++q->next_id);
	json_object *req = json_object_new_object();
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", args);
	json_object_object_add(req, "id", json_object_new_string(id));
	int rc = jsock_send_json(q->s, req, deadline, e);
	json_object_put(req);
	if (rc == 0 && fault_lose_reply(cmd))
		return xerr(e, QX_FAIL, "QMP %s: no answer within %d ms", cmd, timeout_ms);
	while (rc == 0) {
		json_object *o = NULL, *v;
		if ((rc = jsock_recv(q->s, deadline, &o, e)) < 0)
			break;
		if (json_object_object_get_ex(o, "event", NULL)) {
			keep_event(q, o);
			continue;
		}
		if (!json_object_object_get_ex(o, "id", &v) || strcmp(json_object_get_string(v) ?: "", id) != 0) {
			json_object_put(o); /* a stale reply to a command that timed out */
			continue;
		}
		if (json_object_object_get_ex(o, "error", &v)) {
			json_object *cls = json_object_object_get(v, "class"), *desc = json_object_object_get(v, "desc");
			rc = xerr(e, QX_FAIL, "QMP %s failed: %s (%s)", cmd, json_object_get_string(desc) ?: "?",
				  json_object_get_string(cls) ?: "?");
		} else if (ret) {
			*ret = json_object_get(json_object_object_get(o, "return"));
		}
		json_object_put(o);
		return rc;
	}
	if (e && strstr(e->msg, "no answer in time")) {
		e->code = 0;
		xerr(e, QX_FAIL, "QMP %s: no answer within %d ms", cmd, timeout_ms);
	}
	return rc;
}

static bool event_matches(json_object *o, const char *name, const char *key, const char *val)
{
	json_object *ev = json_object_object_get(o, "event");
	if (!ev || strcmp(json_object_get_string(ev), name) != 0)
		return false;
	if (!key)
		return true;
	json_object *v = json_object_object_get(json_object_object_get(o, "data"), key);
	return v && !strcmp(json_object_get_string(v), val);
}

int qmpc_wait_event(struct qmpc *q, const char *name, const char *key, const char *val, int timeout_ms,
		    json_object **ev, struct err *e)
{
	for (size_t i = 0; i < json_object_array_length(q->events); i++) {
		json_object *o = json_object_array_get_idx(q->events, i);
		if (event_matches(o, name, key, val)) {
			if (ev)
				*ev = json_object_get(o);
			json_object_array_del_idx(q->events, i, 1);
			return 0;
		}
	}
	int64_t deadline = jsock_now_ms() + timeout_ms;
	for (;;) {
		json_object *o = NULL;
		int rc = jsock_recv(q->s, deadline, &o, e);
		if (rc < 0)
			return rc;
		if (event_matches(o, name, key, val)) {
			if (ev)
				*ev = o;
			else
				json_object_put(o);
			return 0;
		}
		if (json_object_object_get_ex(o, "event", NULL))
			keep_event(q, o);
		else
			json_object_put(o);
	}
}

int qmpc_next_event(struct qmpc *q, int timeout_ms, json_object **ev, struct err *e)
{
	if (json_object_array_length(q->events)) {
		*ev = json_object_get(json_object_array_get_idx(q->events, 0));
		json_object_array_del_idx(q->events, 0, 1);
		return 0;
	}
	int64_t deadline = jsock_now_ms() + timeout_ms;
	for (;;) {
		json_object *o = NULL;
		struct err re = {0};
		if (jsock_recv(q->s, deadline, &o, &re) < 0) {
			if (strstr(re.msg, "no answer in time"))
				return 1;
			*e = re;
			return -(re.code ? re.code : QX_FAIL);
		}
		if (json_object_object_get_ex(o, "event", NULL)) {
			*ev = o;
			return 0;
		}
		json_object_put(o); /* a stale reply to a command that timed out */
	}
}
