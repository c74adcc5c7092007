// SPDX-License-Identifier: MIT
/* cmd-disks: guest-get-disks (the work is in sysdisk.c). */
#include "commands.h"

#include "sysdisk.h"

static int get_disks(struct agent *a, struct json_object *args, struct json_object **ret,
		     struct err *e)
{
	(void)a, (void)args;
	return sysdisk_list(ret, e);
}

const struct rpc_command cmd_get_disks = {"guest-get-disks", get_disks, NULL, 0};
