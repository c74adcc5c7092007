/* SPDX-License-Identifier: MIT */
/*
 * qmpc: a QMP client — greeting, capabilities negotiation, commands with a
 * deadline each, and events kept until asked for (a job's
 * BLOCK_JOB_CANCELLED may arrive while we wait for another reply).
 */
#ifndef QUIESCE_QMPC_H
#define QUIESCE_QMPC_H

#include "err.h"

#include <json-c/json.h>

struct qmpc;

int qmpc_connect(const char *path, int timeout_ms, struct qmpc **out, struct err *e);
void qmpc_close(struct qmpc *q);
/* args is consumed (may be NULL); *ret (if wanted) is the "return" value,
 * owned by the caller.  A QMP error is QX_FAIL with its class and desc. */
int qmpc_execute(struct qmpc *q, const char *cmd, json_object *args, int timeout_ms, json_object **ret,
		 struct err *e);
/* Wait for event `name` whose data.`key` equals `val` (key NULL: any). */
int qmpc_wait_event(struct qmpc *q, const char *name, const char *key, const char *val, int timeout_ms,
		    json_object **ev, struct err *e);
/* The next event, queued or new: 0 and *ev (owned by the caller), 1 if
 * none came within timeout_ms, <0 if the connection failed. */
int qmpc_next_event(struct qmpc *q, int timeout_ms, json_object **ev, struct err *e);

#endif
