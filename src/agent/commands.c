// SPDX-License-Identifier: MIT
/*
 * commands: the dispatch table.  Its order is the order guest-info lists
 * commands in; qemu-ga's order is an artefact of its registration, which no
 * client may depend on.
 */
#include "commands.h"

const struct rpc_command *const rpc_commands[] = {
	&cmd_sync_delimited,
	&cmd_sync,
	&cmd_ping,
	&cmd_info,
	&cmd_get_time,
	&cmd_shutdown,
	&cmd_fsfreeze_status,
	&cmd_fsfreeze_freeze,
	&cmd_fsfreeze_freeze_list,
	&cmd_fsfreeze_thaw,
	&cmd_fstrim,
	&cmd_get_fsinfo,
	&cmd_get_disks,
	&cmd_network_get_interfaces,
	&cmd_get_vcpus,
	&cmd_get_users,
	&cmd_get_timezone,
	&cmd_get_osinfo,
	&cmd_get_host_name,
	&cmd_freeze_report,
};

const size_t rpc_command_count = sizeof(rpc_commands) / sizeof(rpc_commands[0]);
