/* SPDX-License-Identifier: MIT */
/*
 * sysdisk: what sysfs (and udev's database, when present) say about block
 * devices: the "disk address" a hypervisor can map back to its own disk
 * (PCI controller, bus type, bus/target/unit, serial, device node), and the
 * disk/partition inventory of guest-get-disks.  Shared by guest-get-disks
 * and guest-get-fsinfo.
 */
#ifndef QUIESCE_SYSDISK_H
#define QUIESCE_SYSDISK_H

#include "err.h"

struct json_object;

/* For the block device at sysfs path `syspath`, prepend one address object
 * per underlying real disk to the array `disks` (recursing through dm/md
 * slaves); *name (if not already set) gets the kernel name.  Roots are the
 * sysfs tree (normally "/sys") and the device directory (normally "/dev"). */
int sysdisk_addresses(const char *syspath, struct json_object *disks, char **name,
		      struct err *e);

/* guest-get-disks' result list. */
int sysdisk_list(struct json_object **ret, struct err *e);

#endif
