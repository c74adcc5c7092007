/* SPDX-License-Identifier: MIT */
/*
 * rpc: the QGA request/response layer.  Takes complete messages from
 * jstream, validates them as qemu-ga does (top-level members, command
 * lookup, enabled check, argument checking), runs the handler and renders
 * the reply with jwrite.  Knows nothing about sockets.
 */
#ifndef QUIESCE_RPC_H
#define QUIESCE_RPC_H

#include "buf.h"
#include "err.h"

#include <stdbool.h>
#include <stddef.h>

struct agent;
struct json_object;
struct jstream_event;

enum arg_type {
	ARG_INT,      /* QAPI 'int': int64 */
	ARG_STR,      /* 'str' */
	ARG_BOOL,     /* 'bool' */
	ARG_STR_LIST, /* ['str'] */
};

struct arg_spec {
	const char *name;
	enum arg_type type;
	bool optional;
};

/* A handler returns 0 and may set *ret (NULL means {}), or a negative errno
 * with e->msg as the GenericError desc. */
typedef int (*rpc_handler)(struct agent *a, struct json_object *args, struct json_object **ret,
			   struct err *e);

#define RPC_NO_SUCCESS_RESPONSE 1u /* like guest-shutdown: no reply on success */
#define RPC_FROZEN_SAFE 2u         /* stays enabled while filesystems are frozen */

struct rpc_command {
	const char *name;
	rpc_handler fn;
	const struct arg_spec *args; /* terminated by {NULL}; NULL = no arguments */
	unsigned flags;
};

/* The command table (commands.c), in guest-info order. */
extern const struct rpc_command *const rpc_commands[];
extern const size_t rpc_command_count;

const struct rpc_command *rpc_find(const char *name);

/* Whether cmd may run now; *reason gets the suffix for the error desc
 * (NULL for none). */
bool rpc_is_enabled(const struct agent *a, const struct rpc_command *cmd, const char **reason);

/* Handle one stream event, appending the reply (if any) to out. */
void rpc_handle(struct agent *a, const struct jstream_event *ev, struct buf *out);

/* Check args against spec with QAPI's error texts.  0 or -EINVAL. */
int args_check(const struct arg_spec *spec, struct json_object *args, struct err *e);

#endif
