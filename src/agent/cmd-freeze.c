// SPDX-License-Identifier: MIT
/*
 * cmd-freeze: guest-fsfreeze-status/-freeze/-freeze-list/-thaw, and our
 * own quiesce-freeze-report (what happened during the last freeze: hook
 * results and durations, the frozen window, whether the watchdog thawed).
 * The work is in freeze.c.  quiesce-freeze-report has no "guest-" prefix,
 * so it can never collide with a future qemu-ga command.
 */
#include "commands.h"

#include "agent.h"

#include <errno.h>
#include <json-c/json.h>

static int status(struct agent *a, struct json_object *args, struct json_object **ret,
		  struct err *e)
{
	(void)args, (void)e;
	*ret = json_object_new_string(agent_is_frozen(a) ? "frozen" : "thawed");
	return 0;
}

static int freeze(struct agent *a, struct json_object *args, struct json_object **ret,
		  struct err *e)
{
	/* No "mountpoints" (or guest-fsfreeze-freeze) means every filesystem;
	 * a list, even an empty one, means exactly those: [] freezes nothing. */
	struct strlist list = {0};
	struct json_object *mp;
	bool listed = json_object_object_get_ex(args, "mountpoints", &mp);
	if (listed)
		for (size_t i = 0; i < json_object_array_length(mp); i++)
			if (strlist_add(&list, json_object_get_string(json_object_array_get_idx(mp, i))) < 0) {
				strlist_free(&list);
				return err_set(e, -ENOMEM, "out of memory");
			}
	int r = freezer_freeze(&a->freezer, listed ? &list : NULL, e);
	strlist_free(&list);
	if (r < 0)
		return r;
	*ret = json_object_new_int(r);
	return 0;
}

static int thaw(struct agent *a, struct json_object *args, struct json_object **ret, struct err *e)
{
	(void)args;
	int r = freezer_thaw(&a->freezer, e);
	if (r < 0)
		return r;
	*ret = json_object_new_int(r);
	return 0;
}

static int report(struct agent *a, struct json_object *args, struct json_object **ret,
		  struct err *e)
{
	(void)args, (void)e;
	*ret = freezer_report_json(&a->freezer);
	return 0;
}

static const struct arg_spec freeze_list_args[] = {{"mountpoints", ARG_STR_LIST, true}, {NULL}};

const struct rpc_command cmd_fsfreeze_status = {"guest-fsfreeze-status", status, NULL,
						RPC_FROZEN_SAFE};
const struct rpc_command cmd_fsfreeze_freeze = {"guest-fsfreeze-freeze", freeze, NULL, 0};
const struct rpc_command cmd_fsfreeze_freeze_list = {"guest-fsfreeze-freeze-list", freeze,
						     freeze_list_args, 0};
const struct rpc_command cmd_fsfreeze_thaw = {"guest-fsfreeze-thaw", thaw, NULL, RPC_FROZEN_SAFE};
const struct rpc_command cmd_freeze_report = {"quiesce-freeze-report", report, NULL,
					      RPC_FROZEN_SAFE};
