/* SPDX-License-Identifier: MIT */
/*
 * commands: every QGA command the agent implements, one `struct
 * rpc_command` each, defined in the cmd-*.c file for its area and listed
 * in commands.c.
 */
#ifndef QUIESCE_COMMANDS_H
#define QUIESCE_COMMANDS_H

#include "rpc.h"

extern const struct rpc_command cmd_sync_delimited, cmd_sync, cmd_ping, cmd_info;
extern const struct rpc_command cmd_get_time, cmd_shutdown, cmd_get_host_name, cmd_get_osinfo,
	cmd_get_timezone, cmd_get_users, cmd_get_vcpus;
extern const struct rpc_command cmd_network_get_interfaces;
extern const struct rpc_command cmd_get_disks, cmd_get_fsinfo, cmd_fstrim;
extern const struct rpc_command cmd_fsfreeze_status, cmd_fsfreeze_freeze, cmd_fsfreeze_freeze_list,
	cmd_fsfreeze_thaw, cmd_freeze_report;

#endif
