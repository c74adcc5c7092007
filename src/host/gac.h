/* SPDX-License-Identifier: MIT */
/*
 * gac: a guest-agent client (qemu-ga or quiesce-agent) on the host end of
 * the agent's virtio-serial port.
 *
 * The channel has no framing guarantees across reconnects: a previous
 * client may have left a half-sent request, and the agent may still owe an
 * answer to a command that timed out.  So every session starts — and every
 * timeout is followed by — a resync: 0xFF (which makes the agent drop any
 * partial input), then guest-sync-delimited with a random id, skipping
 * everything up to the agent's 0xFF and any reply that is not the one for
 * that id.  Every call has a deadline.
 */
#ifndef QUIESCE_GAC_H
#define QUIESCE_GAC_H

#include "err.h"

#include <json-c/json.h>
#include <stdbool.h>

struct gac;

int gac_open(const char *path, int timeout_ms, struct gac **out, struct err *e);
void gac_close(struct gac *g);
int gac_sync(struct gac *g, int timeout_ms, struct err *e);
/* args consumed (may be NULL).  On a timeout the session is marked for
 * resync before the next call.  An agent error is QX_FAIL with its desc. */
int gac_execute(struct gac *g, const char *cmd, json_object *args, int timeout_ms, json_object **ret,
		struct err *e);
/* Whether guest-info lists `cmd` as enabled (false on any error). */
bool gac_has_command(struct gac *g, const char *cmd, int timeout_ms);

/* Thaw and confirm with guest-fsfreeze-status, resyncing and retrying for
 * at least `budget_ms` (and at least three times).  Signals do not shorten
 * it: a thaw is what a signal asks for.  *thawed: what the first thaw
 * reported, -1 if it did not answer (a later one would count what the lost
 * one left).  0 once the agent says "thawed". */
int gac_thaw_confirmed(struct gac *g, int budget_ms, int timeout_ms, int *thawed, struct err *e);

#endif
