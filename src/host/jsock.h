/* SPDX-License-Identifier: MIT */
/*
 * jsock: JSON objects over a unix stream socket, with a deadline on every
 * wait — the transport under the QMP and guest-agent clients.
 *
 * Nothing here ever blocks without a bound: users of libvirt, Proxmox and
 * virtnbdbackup all lost guests to an agent call that waited forever
 * (docs/backup-anchors.md, pain points 1–2).  Objects are cut from the byte
 * stream by json-c's incremental tokener; jsock_skip_to_ff() discards bytes
 * up to the 0xFF the guest agent sends before a guest-sync-delimited reply.
 */
#ifndef QUIESCE_JSOCK_H
#define QUIESCE_JSOCK_H

#include "err.h"

#include <json-c/json.h>
#include <stdint.h>

struct jsock;

/* Milliseconds on CLOCK_MONOTONIC, for deadlines. */
int64_t jsock_now_ms(void);

/* max_depth: how deeply the peer's objects may nest (json-c's default, 32,
 * is less than QMP's answers for a VM with a long backing chain: every
 * image in it nests one level deeper). */
int jsock_connect(const char *path, int max_depth, int64_t deadline, struct jsock **out, struct err *e);
void jsock_close(struct jsock *s);
int jsock_send(struct jsock *s, const void *data, size_t len, int64_t deadline, struct err *e);
int jsock_send_json(struct jsock *s, json_object *o, int64_t deadline, struct err *e);
/* The next object (*out owned by the caller).  Timeout, EOF and bad JSON are
 * errors (QX_FAIL) whose message says which. */
int jsock_recv(struct jsock *s, int64_t deadline, json_object **out, struct err *e);
/* Drop everything up to and including the next 0xFF byte; reset the parser. */
int jsock_skip_to_ff(struct jsock *s, int64_t deadline, struct err *e);
/* Forget buffered bytes and parser state (after a timeout). */
void jsock_reset(struct jsock *s);
const char *jsock_path(const struct jsock *s);

#endif
