// SPDX-License-Identifier: MIT
/*
 * sysdisk: block device inventory and addresses from sysfs (see sysdisk.h).
 *
 * The algorithm follows qemu-ga 7.2 so hosts see the same answers:
 * - a device whose sysfs path lies under /devices/virtual/block/ (loop, dm,
 *   md, zram) has no address of its own; dm and md are followed through
 *   their slaves/ down to real disks;
 * - a real device gets one address: parse the PCI function after
 *   /devices/pci, walk down through bridges until a storage driver we know
 *   (ata_piix, sym53c8xx, virtio-pci, ahci, nvme) owns the function, then
 *   read SCSI target/host numbers from the rest of the path; non-PCI virtio
 *   (virtio-mmio) is "virtio"; anything else is "unknown" with -1s;
 * - lists are built by prepending, in raw readdir order, exactly like
 *   qemu-ga, so the order hosts see is the same.
 * Serial numbers and dm aliases come from udev's database, as qemu-ga reads
 * them through libudev.  When a guest has no udev at all (a minimal guest),
 * the serial falls back to sysfs' virtio-blk/NVMe "serial" attribute: a
 * deliberate improvement, so hosts can still map disks (docs/compat.md).
 */
#include "sysdisk.h"

#include "cleanup.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* Format a path; an over-long one is cut, which later lookups then fail
 * on, as they should. */
__attribute__((format(printf, 2, 3))) static void pathf(char out[static PATH_MAX], const char *fmt,
							 ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out, PATH_MAX, fmt, ap);
	va_end(ap);
}

static char *read_line_file(const char *path)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	char buf[512];
	if (!f || !fgets(buf, sizeof(buf), f))
		return NULL;
	buf[strcspn(buf, "\n")] = '\0';
	return strdup(buf);
}

/* "/dev/" + DEVNAME from <syspath>/uevent, as udev names the node. */
static char *devnode(const char *syspath)
{
	char path[PATH_MAX];
	pathf(path, "%s/uevent", syspath);
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	char line[512];
	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "DEVNAME=", 8))
			continue;
		line[strcspn(line, "\n")] = '\0';
		char *node = NULL;
		if (asprintf(&node, "/dev/%s", line + 8) < 0)
			return NULL;
		return node;
	}
	return NULL;
}

/* A property from udev's database for the device at syspath, if any. */
static char *udev_property(const char *syspath, const char *key)
{
	char path[PATH_MAX];
	pathf(path, "%s/dev", syspath);
	_cleanup_free_ char *dev = read_line_file(path);
	if (!dev)
		return NULL;
	pathf(path, "/run/udev/data/b%s", dev);
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	char line[1024];
	size_t klen = strlen(key);
	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (!strncmp(line, "E:", 2) && !strncmp(line + 2, key, klen) &&
		    line[2 + klen] == '=' && line[3 + klen])
			return strdup(line + 3 + klen);
	}
	return NULL;
}

static char *disk_serial(const char *syspath)
{
	char *s = udev_property(syspath, "ID_SERIAL");
	if (s || access("/run/udev/data", F_OK) == 0)
		return s;
	/* no udev in this guest: read what udev's rules would have */
	char path[PATH_MAX];
	pathf(path, "%s/serial", syspath);
	s = read_line_file(path);
	if (!s) {
		pathf(path, "%s/device/serial", syspath);
		s = read_line_file(path);
	}
	if (s && !*s) {
		free(s);
		s = NULL;
	}
	return s;
}

struct pci {
	int domain, bus, slot, function;
};

static const char *const storage_drivers[] = {"ata_piix", "sym53c8xx", "virtio-pci", "ahci",
					      "nvme"};

/* Index of host number `num` among the ataN/hostN siblings in `dir`. */
static int host_index(const char *dir, const char *prefix, unsigned num, struct err *e)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	if (!d)
		return err_sys(e, -errno, "opendir(\"%s\")", dir);
	unsigned hosts[8], n = 0;
	struct dirent *de;
	size_t plen = strlen(prefix);
	while ((de = readdir(d)) && n < 8) {
		unsigned h;
		char tail;
		if (!strncmp(de->d_name, prefix, plen) &&
		    sscanf(de->d_name + plen, "%u%c", &h, &tail) == 1)
			hosts[n++] = h;
	}
	int idx = 0;
	for (unsigned i = 0; i < n; i++)
		if (hosts[i] < num)
			idx++;
	return idx;
}

/* Fill the PCI-derived members of addr from the resolved sysfs path S.
 * Returns 1 if the hardware was identified, 0 if not, negative on error. */
static int pci_address(const char *S, struct json_object *addr, struct err *e)
{
	const char *p = strstr(S, "/devices/pci");
	unsigned rd, rb, dom, bus, slot, fn;
	int off = 0;
	if (sscanf(p + strlen("/devices/pci"), "%x:%x/%x:%x:%x.%x%n", &rd, &rb, &dom, &bus, &slot,
		   &fn, &off) < 6)
		return 0;
	const char *cur = p + strlen("/devices/pci") + off; /* end of the function component */
	const char *driver = NULL;
	for (;;) {
		char path[PATH_MAX], link[PATH_MAX];
		pathf(path, "%.*s/driver", (int)(cur - S), S);
		ssize_t n = readlink(path, link, sizeof(link) - 1);
		if (n > 0) {
			link[n] = '\0';
			const char *base = strrchr(link, '/');
			base = base ? base + 1 : link;
			for (size_t i = 0; i < sizeof(storage_drivers) / sizeof(*storage_drivers); i++)
				if (!strcmp(base, storage_drivers[i]))
					driver = storage_drivers[i];
		}
		if (driver)
			break;
		int o2 = 0;
		if (sscanf(cur, "/%x:%x:%x.%x%n", &dom, &bus, &slot, &fn, &o2) < 4 || !o2)
			return 0; /* unsupported driver or sysfs path */
		cur += o2;
	}

	unsigned t[7];
	bool has_tgt = false;
	const char *tp = strstr(S, "/target");
	if (tp && sscanf(tp, "/target%u:%u:%u/%u:%u:%u:%u", &t[0], &t[1], &t[2], &t[3], &t[4],
			 &t[5], &t[6]) == 7)
		has_tgt = true;

	int host = -1;
	const char *hp = strstr(S, "/ata");
	const char *prefix = "ata";
	if (!hp) {
		hp = strstr(S, "/host");
		prefix = "host";
	}
	unsigned hnum;
	if (hp && sscanf(hp + 1 + strlen(prefix), "%u", &hnum) == 1) {
		char dir[PATH_MAX];
		pathf(dir, "%.*s", (int)(hp - S), S);
		host = host_index(dir, prefix, hnum, e);
		if (host < 0)
			return host;
	}

	struct json_object *pci = json_object_new_object();
	json_object_object_add(pci, "bus", json_object_new_int((int)bus));
	json_object_object_add(pci, "slot", json_object_new_int((int)slot));
	json_object_object_add(pci, "domain", json_object_new_int((int)dom));
	json_object_object_add(pci, "function", json_object_new_int((int)fn));
	json_object_object_add(addr, "pci-controller", pci);

	const char *type = NULL;
	int unit = 0, busno = 0;
	if (!strcmp(driver, "ata_piix")) {
		if (host < 0 || !has_tgt)
			return 0;
		type = "ide", busno = host, unit = (int)t[5];
	} else if (!strcmp(driver, "sym53c8xx")) {
		if (!has_tgt)
			return 0;
		type = "scsi", unit = (int)t[5];
	} else if (!strcmp(driver, "virtio-pci")) {
		type = has_tgt ? "scsi" : "virtio";
		unit = has_tgt ? (int)t[6] : 0;
	} else if (!strcmp(driver, "ahci")) {
		if (host < 0 || !has_tgt)
			return 0;
		type = "sata", unit = host;
	} else {
		type = "nvme";
	}
	json_object_object_add(addr, "bus-type", json_object_new_string(type));
	json_object_object_add(addr, "bus", json_object_new_int(busno));
	json_object_object_add(addr, "unit", json_object_new_int(unit));
	return 1;
}

static void virtio_mmio_address(const char *S, struct json_object *addr)
{
	if (!strstr(S, "/block"))
		return;
	const char *tp = strstr(S, "/target");
	unsigned t[7];
	if (tp && sscanf(tp, "/target%u:%u:%u/%u:%u:%u:%u", &t[0], &t[1], &t[2], &t[3], &t[4],
			 &t[5], &t[6]) == 7) {
		json_object_object_add(addr, "bus-type", json_object_new_string("scsi"));
		json_object_object_add(addr, "bus", json_object_new_int((int)t[4]));
		json_object_object_add(addr, "target", json_object_new_int((int)t[5]));
		json_object_object_add(addr, "unit", json_object_new_int((int)t[6]));
	} else {
		json_object_object_add(addr, "bus-type", json_object_new_string("virtio"));
	}
}

static int32_t get_int(struct json_object *o, const char *key, int32_t dflt)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_int(v) : dflt;
}

/* Rebuild addr with qemu-ga's member order and defaults. */
static struct json_object *finish_address(struct json_object *raw, char *dev, char *serial)
{
	struct json_object *a = json_object_new_object(), *v;
	if (serial)
		json_object_object_add(a, "serial", json_object_new_string(serial));
	json_object_object_get_ex(raw, "bus-type", &v);
	json_object_object_add(a, "bus-type", json_object_new_string(v ? json_object_get_string(v)
									 : "unknown"));
	json_object_object_add(a, "bus", json_object_new_int(get_int(raw, "bus", 0)));
	json_object_object_add(a, "unit", json_object_new_int(get_int(raw, "unit", 0)));
	if (json_object_object_get_ex(raw, "pci-controller", &v)) {
		json_object_object_add(a, "pci-controller", json_object_get(v));
	} else {
		struct json_object *pci = json_object_new_object();
		static const char *const k[] = {"bus", "slot", "domain", "function"};
		for (int i = 0; i < 4; i++)
			json_object_object_add(pci, k[i], json_object_new_int(-1));
		json_object_object_add(a, "pci-controller", pci);
	}
	if (dev)
		json_object_object_add(a, "dev", json_object_new_string(dev));
	json_object_object_add(a, "target", json_object_new_int(get_int(raw, "target", 0)));
	json_object_put(raw);
	return a;
}

static void prepend(struct json_object *list, struct json_object *item)
{
	json_object_array_put_idx(list, json_object_array_length(list), NULL);
	for (size_t i = json_object_array_length(list) - 1; i > 0; i--) {
		struct json_object *prev = json_object_get(json_object_array_get_idx(list, i - 1));
		json_object_array_put_idx(list, i, prev);
	}
	json_object_array_put_idx(list, 0, item);
}

int sysdisk_addresses(const char *syspath, struct json_object *disks, char **name,
		      struct err *e)
{
	_cleanup_free_ char *S = realpath(syspath, NULL);
	if (!S) {
		if (errno != ENOENT)
			return err_sys(e, -errno, "realpath(\"%s\")", syspath);
		if (name && !*name) {
			const char *b = strrchr(syspath, '/');
			*name = strdup(b ? b + 1 : syspath);
		}
		return 0;
	}
	if (name && !*name) {
		const char *b = strrchr(S, '/');
		*name = strdup(b ? b + 1 : S);
	}
	if (strstr(S, "/devices/virtual/block/")) {
		char dir[PATH_MAX];
		pathf(dir, "%s/slaves", S);
		_cleanup_closedir_ DIR *d = opendir(dir);
		if (!d)
			return errno == ENOENT ? 0 : err_sys(e, -errno, "opendir(\"%s\")", dir);
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_type != DT_LNK)
				continue;
			char sub[PATH_MAX];
			pathf(sub, "%s/%s", dir, de->d_name);
			int r = sysdisk_addresses(sub, disks, NULL, e);
			if (r < 0)
				return r;
		}
		return 0;
	}

	struct json_object *raw = json_object_new_object();
	int hw = 0;
	if (strstr(S, "/devices/pci")) {
		hw = pci_address(S, raw, e);
		if (hw < 0) {
			json_object_put(raw);
			return hw;
		}
	} else if (strstr(S, "/virtio")) {
		virtio_mmio_address(S, raw);
		hw = 1;
	}
	_cleanup_free_ char *dev = devnode(S);
	_cleanup_free_ char *serial = disk_serial(S);
	if (!hw && !dev && !serial) {
		json_object_put(raw);
		return 0;
	}
	if (!hw)
		json_object_object_del(raw, "bus-type");
	prepend(disks, finish_address(raw, dev, serial));
	return 0;
}

static bool is_partition_name(const char *disk, const char *entry)
{
	size_t n = strlen(disk);
	if (strncmp(entry, disk, n))
		return false;
	const char *t = entry + n;
	if (*t == 'p')
		t++;
	return isdigit((unsigned char)*t);
}

static struct json_object *disk_info(const char *name, bool partition, struct json_object *deps,
				     struct json_object *address, const char *alias)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(name));
	if (deps)
		json_object_object_add(o, "dependencies", deps);
	json_object_object_add(o, "partition", json_object_new_boolean(partition));
	if (address)
		json_object_object_add(o, "address", address);
	if (alias)
		json_object_object_add(o, "alias", json_object_new_string(alias));
	return o;
}

static void add_disk(struct json_object *list, const char *entry)
{
	char path[PATH_MAX];
	pathf(path, "/sys/block/%s/size", entry);
	_cleanup_free_ char *size = read_line_file(path);
	if (!size || !strcmp(size, "0"))
		return;
	pathf(path, "/sys/block/%s", entry);
	_cleanup_free_ char *node = devnode(path);
	if (!node)
		return;

	struct json_object *address = NULL;
	_cleanup_free_ char *real = realpath(path, NULL);
	if (real && !strstr(real, "/devices/virtual/block/")) {
		struct json_object *addrs = json_object_new_array();
		struct err ignored;
		if (sysdisk_addresses(path, addrs, NULL, &ignored) == 0 &&
		    json_object_array_length(addrs) > 0)
			address = json_object_get(json_object_array_get_idx(addrs, 0));
		json_object_put(addrs);
	}

	struct json_object *deps = NULL;
	char slaves[PATH_MAX];
	pathf(slaves, "%s/slaves", path);
	_cleanup_closedir_ DIR *sd = opendir(slaves);
	if (sd) {
		deps = json_object_new_array();
		struct dirent *de;
		while ((de = readdir(sd))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			char sp[PATH_MAX];
			pathf(sp, "%s/%s", slaves, de->d_name);
			_cleanup_free_ char *sn = devnode(sp);
			if (sn)
				prepend(deps, json_object_new_string(sn));
		}
	}
	_cleanup_free_ char *alias = udev_property(path, "DM_NAME");
	prepend(list, disk_info(node, false, deps, address, alias));

	_cleanup_closedir_ DIR *d = opendir(path);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (!(de->d_type & DT_DIR) || !is_partition_name(entry, de->d_name))
			continue;
		char pp[PATH_MAX];
		pathf(pp, "%s/%s", path, de->d_name);
		_cleanup_free_ char *pn = devnode(pp);
		if (!pn)
			continue;
		struct json_object *pdeps = json_object_new_array();
		json_object_array_add(pdeps, json_object_new_string(node));
		prepend(list, disk_info(pn, true, pdeps, NULL, NULL));
	}
}

int sysdisk_list(struct json_object **ret, struct err *e)
{
	_cleanup_closedir_ DIR *d = opendir("/sys/block");
	if (!d)
		return err_sys(e, -errno, "Can't open directory \"/sys/block\"");
	struct json_object *list = json_object_new_array();
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_type == DT_LNK)
			add_disk(list, de->d_name);
	*ret = list;
	return 0;
}
