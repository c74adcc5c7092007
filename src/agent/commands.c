// SPDX-License-Identifier: MIT
/*
 * commands: the dispatch table, in qemu-ga 7.2's registration order, which
 * is what "-b help" prints; guest-info lists them in reverse, as qemu-ga
 * does.  No client should depend on either order, but matching costs
 * nothing and keeps the conformance comparison exact.
 */
#include "commands.h"

const struct rpc_command *const rpc_commands[] = {
	&cmd_sync_delimited,
	&cmd_sync,
	&cmd_ping,
	&cmd_get_time,
	&cmd_info,
	&cmd_shutdown,
	&cmd_fsfreeze_status,
	&cmd_fsfreeze_freeze,
	&cmd_fsfreeze_freeze_list,
	&cmd_fsfreeze_thaw,
	&cmd_fstrim,
	&cmd_network_get_interfaces,
	&cmd_get_vcpus,
	&cmd_get_disks,
	&cmd_get_fsinfo,
	&cmd_get_host_name,
	&cmd_get_users,
	&cmd_get_timezone,
	&cmd_get_osinfo,
	/* our own extensions, after qemu-ga's */
	&cmd_freeze_report,
};

const size_t rpc_command_count = sizeof(rpc_commands) / sizeof(rpc_commands[0]);
