// SPDX-License-Identifier: MIT
/* gac: guest-agent client with resync and deadlines (see gac.h). */
#include "gac.h"

#include "jsock.h"
#include "xerr.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct gac {
	struct jsock *s;
	bool synced;
};

int gac_open(const char *path, int timeout_ms, struct gac **out, struct err *e)
{
	struct gac *g = calloc(1, sizeof(*g));
	if (!g)
		return xerr(e, QX_FAIL, "out of memory");
	/* the agent's answers nest a few levels; no need to let a guest nest deeper */
	int rc = jsock_connect(path, 64, jsock_now_ms() + timeout_ms, &g->s, e);
	if (rc == 0)
		rc = gac_sync(g, timeout_ms, e);
	if (rc < 0) {
		gac_close(g);
		return rc;
	}
	*out = g;
	return 0;
}

void gac_close(struct gac *g)
{
	if (!g)
		return;
	jsock_close(g->s);
	free(g);
}

static int send_sync(struct gac *g, int64_t id, int64_t deadline, struct err *e)
{
	json_object *req = json_object_new_object(), *args = json_object_new_object();
	json_object_object_add(args, "id", json_object_new_int64(id));
	json_object_object_add(req, "execute", json_object_new_string("guest-sync-delimited"));
	json_object_object_add(req, "arguments", args);
	int rc = jsock_send(g->s, "\xff", 1, deadline, e);
	if (rc == 0)
		rc = jsock_send_json(g->s, req, deadline, e);
	json_object_put(req);
	return rc;
}

/* Send guest-sync-delimited with a fresh random id and read until its answer,
 * sending it again (new id) after 0.2, 0.4, 0.8 s ... : right after a client
 * change the agent may be backing off from the host's absence and miss the
 * first.  Answers to the older ids are skipped: replies come in order, so
 * once the newest id's answer is read the stream is in step. */
int gac_sync(struct gac *g, int timeout_ms, struct err *e)
{
	int64_t deadline = jsock_now_ms() + timeout_ms, id = 0, wait = 200;
	int rc = 0;
	g->synced = false;
	jsock_reset(g->s);
	while (rc == 0) {
		int64_t now = jsock_now_ms();
		if (now >= deadline)
			break;
		if (getrandom(&id, sizeof(id), 0) != sizeof(id))
			id = now;
		id &= INT32_MAX; /* qemu-ga takes an int */
		if ((rc = send_sync(g, id, deadline, e)) < 0)
			break;
		int64_t until = now + wait < deadline ? now + wait : deadline;
		wait *= 2;
		for (;;) {
			struct err pe = {0};
			if (jsock_skip_to_ff(g->s, until, &pe) < 0)
				break; /* nothing in time: send again */
			json_object *o = NULL, *v;
			if (jsock_recv(g->s, until, &o, &pe) < 0)
				continue; /* garbage after a stray 0xFF: look for the next one */
			bool ours = json_object_object_get_ex(o, "return", &v) && json_object_is_type(v, json_type_int) &&
				    json_object_get_int64(v) == id;
			json_object_put(o);
			if (ours) {
				g->synced = true;
				return 0;
			}
		}
	}
	if (rc == 0)
		rc = xerr(e, QX_FAIL, "guest agent at %s did not answer guest-sync-delimited within %d ms",
			  jsock_path(g->s), timeout_ms);
	return rc;
}

int gac_execute(struct gac *g, const char *cmd, json_object *args, int timeout_ms, json_object **ret,
		struct err *e)
{
	if (!g->synced) {
		int rc = gac_sync(g, timeout_ms, e);
		if (rc < 0) {
			json_object_put(args);
			return rc;
		}
	}
	int64_t deadline = jsock_now_ms() + timeout_ms;
	json_object *req = json_object_new_object(), *o = NULL, *v;
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", args);
	int rc = jsock_send_json(g->s, req, deadline, e);
	json_object_put(req);
	if (rc == 0)
		rc = jsock_recv(g->s, deadline, &o, e);
	if (rc < 0) {
		g->synced = false; /* its answer may still come: resync first next time */
		if (strstr(e->msg, "no answer in time")) {
			e->code = 0;
			xerr(e, QX_FAIL, "guest agent: %s got no answer within %d ms", cmd, timeout_ms);
		}
		return rc;
	}
	if (json_object_object_get_ex(o, "error", &v)) {
		json_object *desc = json_object_object_get(v, "desc");
		rc = xerr(e, QX_FAIL, "guest agent: %s failed: %s", cmd, json_object_get_string(desc) ?: "?");
	} else if (!json_object_object_get_ex(o, "return", &v)) {
		g->synced = false;
		rc = xerr(e, QX_FAIL, "guest agent: %s: unexpected answer", cmd);
	} else if (ret) {
		*ret = json_object_get(v);
	}
	json_object_put(o);
	return rc;
}

bool gac_has_command(struct gac *g, const char *cmd, int timeout_ms)
{
	json_object *info = NULL;
	struct err e = {0};
	if (gac_execute(g, "guest-info", NULL, timeout_ms, &info, &e) < 0)
		return false;
	bool found = false;
	json_object *cmds = json_object_object_get(info, "supported_commands");
	for (size_t i = 0; cmds && i < json_object_array_length(cmds) && !found; i++) {
		json_object *c = json_object_array_get_idx(cmds, i);
		json_object *n = json_object_object_get(c, "name"), *en = json_object_object_get(c, "enabled");
		found = n && !strcmp(json_object_get_string(n), cmd) && json_object_get_boolean(en);
	}
	json_object_put(info);
	return found;
}

int gac_thaw_confirmed(struct gac *g, int budget_ms, int timeout_ms, int *thawed, struct err *e)
{
	*thawed = -1;
	struct err last = {0};
	int64_t deadline = jsock_now_ms() + budget_ms, pause = 100;
	bool unanswered = false; /* a thaw we sent may have thawed without telling us */
	for (int attempt = 0;; attempt++) {
		json_object *r = NULL;
		struct err te = {0};
		if (gac_execute(g, "guest-fsfreeze-thaw", NULL, timeout_ms, &r, &te) == 0) {
			if (*thawed < 0 && !unanswered)
				*thawed = json_object_get_int(r);
		} else {
			unanswered = true;
		}
		json_object_put(r);
		r = NULL;
		struct err se = {0};
		if (gac_execute(g, "guest-fsfreeze-status", NULL, timeout_ms, &r, &se) == 0) {
			bool ok = !strcmp(json_object_get_string(r) ?: "", "thawed");
			json_object_put(r);
			if (ok)
				return 0;
			last = te.code ? te : se;
			if (!last.code)
				xerr(&last, QX_FAIL, "guest agent still reports the guest frozen after a thaw");
		} else {
			last = se;
		}
		/* at least three tries, then as long as the budget lasts */
		int64_t left = deadline - jsock_now_ms();
		if (attempt >= 2 && left <= 0)
			break;
		/* an agent that answers "frozen" at once must not be asked in a
		 * tight loop; one that timed out has already taken its time */
		if (!te.code || !se.code) {
			int64_t nap = pause < left ? pause : left > 0 ? left : 0;
			nanosleep(&(struct timespec){nap / 1000, (nap % 1000) * 1000000}, NULL);
			pause = pause < 1000 ? pause * 2 : 1000;
		}
	}
	if (e && !e->code)
		*e = last;
	return -(last.code ? last.code : QX_FAIL);
}
