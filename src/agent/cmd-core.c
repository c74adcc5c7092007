// SPDX-License-Identifier: MIT
/*
 * cmd-core: the protocol commands every host relies on: guest-sync,
 * guest-sync-delimited, guest-ping and guest-info.
 */
#include "commands.h"

#include "agent.h"
#include "build-config.h"

#include <json-c/json.h>

static const struct arg_spec id_arg[] = {{"id", ARG_INT, false}, {NULL}};

static int sync_echo(struct agent *a, struct json_object *args, struct json_object **ret,
		     struct err *e)
{
	(void)a;
	(void)e;
	struct json_object *id;
	json_object_object_get_ex(args, "id", &id);
	*ret = json_object_get(id);
	return 0;
}

static int sync_delimited(struct agent *a, struct json_object *args, struct json_object **ret,
			  struct err *e)
{
	a->delimit_next = true;
	return sync_echo(a, args, ret, e);
}

static int ping(struct agent *a, struct json_object *args, struct json_object **ret, struct err *e)
{
	(void)a, (void)args, (void)ret, (void)e;
	return 0;
}

static int info(struct agent *a, struct json_object *args, struct json_object **ret, struct err *e)
{
	(void)args, (void)e;
	struct json_object *o = json_object_new_object();
	struct json_object *list = json_object_new_array();
	json_object_object_add(o, "version", json_object_new_string(QUIESCE_VERSION));
	for (size_t i = rpc_command_count; i-- > 0;) { /* newest first, as qemu-ga */
		const struct rpc_command *c = rpc_commands[i];
		const char *reason;
		struct json_object *item = json_object_new_object();
		json_object_object_add(item, "name", json_object_new_string(c->name));
		json_object_object_add(item, "enabled",
				       json_object_new_boolean(rpc_is_enabled(a, c, &reason)));
		json_object_object_add(item, "success-response",
				       json_object_new_boolean(!(c->flags & RPC_NO_SUCCESS_RESPONSE)));
		json_object_array_add(list, item);
	}
	json_object_object_add(o, "supported_commands", list);
	*ret = o;
	return 0;
}

const struct rpc_command cmd_sync_delimited = {"guest-sync-delimited", sync_delimited, id_arg,
					       RPC_FROZEN_SAFE};
const struct rpc_command cmd_sync = {"guest-sync", sync_echo, id_arg, RPC_FROZEN_SAFE};
const struct rpc_command cmd_ping = {"guest-ping", ping, NULL, RPC_FROZEN_SAFE};
const struct rpc_command cmd_info = {"guest-info", info, NULL, RPC_FROZEN_SAFE};
