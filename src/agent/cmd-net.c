// SPDX-License-Identifier: MIT
/*
 * cmd-net: guest-network-get-interfaces.
 *
 * Members are added in QAPI schema order (jwrite orders them as qemu-ga).
 * Interfaces appear in getifaddrs() order, each once.  As in qemu-ga, an
 * interface gets "ip-addresses" and "statistics" (from /proc/net/dev) only
 * if it has at least one IPv4 or IPv6 address, and "hardware-address" when
 * SIOCGIFHWADDR answers.
 */
#include "commands.h"

#include "cleanup.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <json-c/json.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

static int prefix_len(const struct sockaddr *mask)
{
	const uint8_t *p;
	size_t n;
	if (!mask)
		return 0;
	if (mask->sa_family == AF_INET) {
		p = (const uint8_t *)&((const struct sockaddr_in *)mask)->sin_addr;
		n = 4;
	} else {
		p = (const uint8_t *)&((const struct sockaddr_in6 *)mask)->sin6_addr;
		n = 16;
	}
	int bits = 0;
	for (size_t i = 0; i < n; i++)
		bits += __builtin_popcount(p[i]);
	return bits;
}

static struct json_object *net_stats(const char *name)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/net/dev", "re");
	if (!f)
		return NULL;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		*colon = '\0';
		char *n = line + strspn(line, " ");
		if (strcmp(n, name))
			continue;
		unsigned long long v[16];
		if (sscanf(colon + 1,
			   "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu "
			   "%llu %llu",
			   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9],
			   &v[10], &v[11], &v[12], &v[13], &v[14], &v[15]) != 16)
			return NULL;
		static const struct {
			const char *key;
			int col;
		} cols[] = {{"rx-bytes", 0},  {"rx-packets", 1}, {"rx-errs", 2},  {"rx-dropped", 3},
			    {"tx-bytes", 8},  {"tx-packets", 9}, {"tx-errs", 10}, {"tx-dropped", 11}};
		struct json_object *o = json_object_new_object();
		for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
			json_object_object_add(o, cols[i].key,
					       json_object_new_uint64(v[cols[i].col]));
		return o;
	}
	return NULL;
}

static void add_hwaddr(struct json_object *info, const char *name)
{
	_cleanup_close_ int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0)
		return;
	const uint8_t *m = (const uint8_t *)ifr.ifr_hwaddr.sa_data;
	char mac[18];
	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
		 m[5]);
	json_object_object_add(info, "hardware-address", json_object_new_string(mac));
}

static struct json_object *find_or_add(struct json_object *list, const char *name)
{
	size_t n = json_object_array_length(list);
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(list, i), *nm;
		json_object_object_get_ex(o, "name", &nm);
		if (!strcmp(json_object_get_string(nm), name))
			return o;
	}
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(name));
	add_hwaddr(o, name);
	json_object_array_add(list, o);
	return o;
}

static int get_interfaces(struct agent *a, struct json_object *args, struct json_object **ret,
			  struct err *e)
{
	(void)a, (void)args;
	struct ifaddrs *ifap = NULL;
	if (getifaddrs(&ifap) < 0)
		return err_sys(e, -errno, "getifaddrs failed");
	struct json_object *list = json_object_new_array();
	for (struct ifaddrs *i = ifap; i; i = i->ifa_next) {
		struct json_object *info = find_or_add(list, i->ifa_name);
		int fam = i->ifa_addr ? i->ifa_addr->sa_family : AF_UNSPEC;
		if (fam != AF_INET && fam != AF_INET6)
			continue;
		char addr[INET6_ADDRSTRLEN];
		const void *src = fam == AF_INET
					  ? (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr
					  : (const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
		if (!inet_ntop(fam, src, addr, sizeof(addr)))
			continue;
		struct json_object *ip = json_object_new_object();
		json_object_object_add(ip, "ip-address-type",
				       json_object_new_string(fam == AF_INET ? "ipv4" : "ipv6"));
		json_object_object_add(ip, "ip-address", json_object_new_string(addr));
		json_object_object_add(ip, "prefix", json_object_new_int(prefix_len(i->ifa_netmask)));
		struct json_object *ips;
		if (!json_object_object_get_ex(info, "ip-addresses", &ips)) {
			ips = json_object_new_array();
			json_object_object_add(info, "ip-addresses", ips);
		}
		json_object_array_add(ips, ip);
		if (!json_object_object_get_ex(info, "statistics", NULL)) {
			struct json_object *st = net_stats(i->ifa_name);
			if (st)
				json_object_object_add(info, "statistics", st);
		}
	}
	freeifaddrs(ifap);
	*ret = list;
	return 0;
}

const struct rpc_command cmd_network_get_interfaces = {"guest-network-get-interfaces",
						       get_interfaces, NULL, 0};
