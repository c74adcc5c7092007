// SPDX-License-Identifier: MIT
/*
 * options: flags and config file, qemu-ga style (see options.h).
 *
 * Two getopt passes: the first only finds -c (the config file must be read
 * before flags override it), the second applies every flag.  -F takes an
 * optional argument that must be attached (-F/path), as in qemu-ga.
 */
#include "options.h"

#include "build-config.h"
#include "freeze.h"
#include "fdio.h"
#include "keyfile.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/etc/qemu/qemu-ga.conf"
#define DEFAULT_HOOK "/etc/qemu/fsfreeze-hook"
#define DEFAULT_STATEDIR "/var/run"
#define DEFAULT_PIDFILE "/var/run/quiesce-agent.pid"
#define MAX_CONFIG_SIZE (1u << 20)

static const char short_opts[] = "hVvdc:m:p:l:f:F::b:a:s:t:Dr";
static const struct option long_opts[] = {
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{"verbose", no_argument, NULL, 'v'},
	{"daemonize", no_argument, NULL, 'd'},
	{"config", required_argument, NULL, 'c'},
	{"method", required_argument, NULL, 'm'},
	{"path", required_argument, NULL, 'p'},
	{"logfile", required_argument, NULL, 'l'},
	{"pidfile", required_argument, NULL, 'f'},
	{"fsfreeze-hook", optional_argument, NULL, 'F'},
	{"block-rpcs", required_argument, NULL, 'b'},
	{"blacklist", required_argument, NULL, 'b'}, /* qemu-ga's old spelling */
	{"allow-rpcs", required_argument, NULL, 'a'},
	{"service", required_argument, NULL, 's'},
	{"statedir", required_argument, NULL, 't'},
	{"dump-conf", no_argument, NULL, 'D'},
	{"retry-path", no_argument, NULL, 'r'},
	{"hook-timeout", required_argument, NULL, 'H'},   /* ours: no short form */
	{"freeze-timeout", required_argument, NULL, 'W'}, /* ours: no short form */
	{NULL, 0, NULL, 0},
};

static int set_str(char **dst, const char *v, struct err *e)
{
	char *copy = strdup(v);
	if (!copy)
		return err_set(e, -ENOMEM, "out of memory");
	free(*dst);
	*dst = copy;
	return 0;
}

static int parse_bool(const char *v, bool *ret)
{
	if (!strcmp(v, "true") || !strcmp(v, "1"))
		*ret = true;
	else if (!strcmp(v, "false") || !strcmp(v, "0"))
		*ret = false;
	else
		return -EINVAL;
	return 0;
}

/* Seconds for a timeout option: a positive integer, or 0 to disable when
 * allow_off (the watchdog). */
static int parse_seconds(const char *v, bool allow_off, int *ret)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < 0 || n > 86400 || (n == 0 && !allow_off))
		return -EINVAL;
	*ret = n == 0 ? -1 : (int)n;
	return 0;
}

/* Add a comma list the way qemu-ga stores it, which -D shows: each list's
 * items reversed, lists in the order given. */
static int add_rpc_list(struct strlist *l, const char *value)
{
	size_t first = l->n;
	int r = strlist_add_split(l, value, ',');
	for (size_t i = first, j = l->n; r == 0 && i + 1 < j; i++, j--) {
		char *t = l->v[i];
		l->v[i] = l->v[j - 1];
		l->v[j - 1] = t;
	}
	return r;
}

static int config_key(void *opaque, const char *group, const char *key, const char *value,
		      unsigned line, struct err *e)
{
	struct agent_options *o = opaque;
	if (strcmp(group, "general"))
		return 0;
	bool *flag = !strcmp(key, "daemon")       ? &o->daemonize
		     : !strcmp(key, "verbose")    ? &o->verbose
		     : !strcmp(key, "retry-path") ? &o->retry_path
						  : NULL;
	if (flag) {
		if (parse_bool(value, flag) < 0)
			return err_set(e, -EINVAL, "line %u: '%s' needs true or false, not '%s'",
				       line, key, value);
		return 0;
	}
	char **str = !strcmp(key, "method")          ? &o->method
		     : !strcmp(key, "path")          ? &o->path
		     : !strcmp(key, "logfile")       ? &o->logfile
		     : !strcmp(key, "pidfile")       ? &o->pidfile
		     : !strcmp(key, "statedir")      ? &o->statedir
		     : !strcmp(key, "fsfreeze-hook") ? &o->fsfreeze_hook
						     : NULL;
	if (str)
		return set_str(str, value, e);
	if (!strcmp(key, "hook-timeout") || !strcmp(key, "freeze-timeout")) {
		bool hook = key[0] == 'h';
		if (parse_seconds(value, !hook, hook ? &o->hook_timeout_s : &o->freeze_timeout_s) < 0)
			return err_set(e, -EINVAL, "line %u: '%s' needs a number of seconds, not '%s'",
				       line, key, value);
		return 0;
	}
	if (!strcmp(key, "block-rpcs") || !strcmp(key, "blacklist"))
		return add_rpc_list(&o->block_rpcs, value);
	if (!strcmp(key, "allow-rpcs"))
		return add_rpc_list(&o->allow_rpcs, value);
	log_warn("config line %u: unknown key '%s', ignoring", line, key);
	return 0;
}

int options_load_text(struct agent_options *o, const char *text, size_t len, const char *name,
		      struct err *e)
{
	int r = keyfile_parse(text, len, config_key, o, e);
	if (r < 0) {
		char msg[sizeof(e->msg)];
		snprintf(msg, sizeof(msg), "%s", e->msg);
		return err_set(e, r, "error loading configuration from path: %s, %s", name, msg);
	}
	return 0;
}

static int load_file(struct agent_options *o, const char *path, bool required, struct err *e)
{
	struct buf text = BUF_INIT;
	int r = fdio_read_file(path, MAX_CONFIG_SIZE, &text, e);
	if (r == -ENOENT && !required)
		r = 0;
	else if (r < 0 && e) {
		char why[sizeof(e->msg)];
		snprintf(why, sizeof(why), "%s", e->msg);
		r = err_set(e, r, "error loading configuration from path: %s, %s", path, why);
	}
	else
		r = options_load_text(o, text.data, text.len, path, e);
	buf_free(&text);
	return r;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: quiesce-agent [-m <method> -p <path>] [<options>]\n"
		"quiesce-agent %s: a QEMU Guest Agent for application-consistent backups\n"
		"\n"
		"  -m, --method      transport method: one of unix-listen, virtio-serial,\n"
		"                    isa-serial, or vsock-listen (virtio-serial is the default)\n"
		"  -p, --path        device/socket path (the default for virtio-serial is:\n"
		"                    /dev/virtio-ports/org.qemu.guest_agent.0,\n"
		"                    the default for isa-serial is: /dev/ttyS0).\n"
		"                    Socket addresses for vsock-listen are written as <cid>:<port>.\n"
		"  -l, --logfile     set logfile path ('syslog' for syslog), logs to stderr by default\n"
		"  -f, --pidfile     specify pidfile (default is %s)\n"
		"  -F, --fsfreeze-hook[=PATH]\n"
		"                    fsfreeze hook (default %s, used if it exists);\n"
		"                    attach the argument: -F/path/to/hook; empty: no hook\n"
		"  -t, --statedir    specify dir to store state information (absolute paths\n"
		"                    only, default is %s)\n"
		"  -c, --config      configuration file (default %s, or $QGA_CONF)\n"
		"  -v, --verbose     log extra debugging information\n"
		"  -V, --version     print version information and exit\n"
		"  -d, --daemonize   become a daemon\n"
		"  -b, --block-rpcs  comma-separated list of RPCs to disable (no spaces,\n"
		"                    use \"help\" to list available RPCs)\n"
		"  -a, --allow-rpcs  comma-separated list of RPCs to enable; all others are disabled\n"
		"  -D, --dump-conf   dump a config file based on current config\n"
		"                    options / command-line parameters to stdout\n"
		"  -r, --retry-path  attempt re-opening path if it's unavailable or closed\n"
		"      --hook-timeout=SECONDS\n"
		"                    kill a freeze/thaw hook that runs longer (default %d)\n"
		"      --freeze-timeout=SECONDS\n"
		"                    thaw by itself if no thaw arrives this long after a freeze\n"
		"                    (default %d; 0 disables)\n"
		"  -h, --help        display this help and exit\n",
		QUIESCE_VERSION, DEFAULT_PIDFILE, DEFAULT_HOOK, DEFAULT_STATEDIR, DEFAULT_CONFIG,
		FREEZE_DEFAULT_HOOK_TIMEOUT_MS / 1000, FREEZE_DEFAULT_WATCHDOG_MS / 1000);
}

int options_parse(struct agent_options *o, int argc, char **argv, struct err *e)
{
	const char *config = getenv("QGA_CONF");
	bool required = false;
	int c, r;

	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, short_opts, long_opts, NULL)) != -1)
		if (c == 'c') {
			config = optarg;
			required = true;
		}
	r = load_file(o, config ? config : DEFAULT_CONFIG, required, e);
	if (r < 0)
		return r;

	optind = 0;
	opterr = 1; /* getopt names the bad option on stderr, as for qemu-ga */
	while ((c = getopt_long(argc, argv, short_opts, long_opts, NULL)) != -1) {
		r = 0;
		switch (c) {
		case 'h': usage(stdout); return OPTIONS_EXIT;
		case 'V': printf("quiesce-agent %s\n", QUIESCE_VERSION); return OPTIONS_EXIT;
		case 'v': o->verbose = true; break;
		case 'd': o->daemonize = true; break;
		case 'c': break;
		case 'm': r = set_str(&o->method, optarg, e); break;
		case 'p': r = set_str(&o->path, optarg, e); break;
		case 'l': r = set_str(&o->logfile, optarg, e); break;
		case 'f': r = set_str(&o->pidfile, optarg, e); break;
		case 'F': r = set_str(&o->fsfreeze_hook, optarg ? optarg : DEFAULT_HOOK, e); break;
		case 't': r = set_str(&o->statedir, optarg, e); break;
		case 'D': o->dump_conf = true; break;
		case 'r': o->retry_path = true; break;
		case 'b':
			if (!strcmp(optarg, "help")) {
				o->list_rpcs = true;
				return OPTIONS_EXIT;
			}
			r = add_rpc_list(&o->block_rpcs, optarg);
			break;
		case 'a': r = add_rpc_list(&o->allow_rpcs, optarg); break;
		case 's': return err_set(e, -EINVAL, "-s/--service is only for Windows");
		case 'H':
		case 'W':
			if (parse_seconds(optarg, c == 'W', c == 'H' ? &o->hook_timeout_s
								      : &o->freeze_timeout_s) < 0)
				return err_set(e, -EINVAL, "--%s needs a number of seconds, not '%s'",
					       c == 'H' ? "hook-timeout" : "freeze-timeout", optarg);
			break;
		default:
			/* qemu-ga's hint, on stdout like qemu-ga's */
			printf("Unknown option, try '%s --help' for more information.\n", argv[0]);
			return err_set(e, -EINVAL, "%s", "");
		}
		if (r < 0)
			return r;
	}
	if (!o->method && set_str(&o->method, "virtio-serial", e) < 0)
		return -ENOMEM;
	if (!o->statedir && set_str(&o->statedir, DEFAULT_STATEDIR, e) < 0)
		return -ENOMEM;
	if (!o->pidfile && set_str(&o->pidfile, DEFAULT_PIDFILE, e) < 0)
		return -ENOMEM;
	/* qemu-ga runs a hook only with -F; the stock hook installed at the
	 * default path is meant to run, so we use it when it exists.  An
	 * explicitly empty value (--fsfreeze-hook= or fsfreeze-hook=) means
	 * no hook at all. */
	if (!o->fsfreeze_hook && access(DEFAULT_HOOK, F_OK) == 0 &&
	    set_str(&o->fsfreeze_hook, DEFAULT_HOOK, e) < 0)
		return -ENOMEM;
	if (o->fsfreeze_hook && !o->fsfreeze_hook[0]) {
		free(o->fsfreeze_hook);
		o->fsfreeze_hook = NULL;
	}
	if (o->statedir[0] != '/')
		return err_set(e, -EINVAL, "statedir '%s' must be an absolute path", o->statedir);
	return OPTIONS_RUN;
}

static void dump_list(FILE *f, const char *key, const struct strlist *l)
{
	fprintf(f, "%s=", key);
	for (size_t i = 0; i < l->n; i++)
		fprintf(f, "%s%s", i ? "," : "", l->v[i]);
	fputc('\n', f);
}

void options_dump(const struct agent_options *o, FILE *f)
{
	const char *path = o->path;
	if (!path && !strcmp(o->method, "virtio-serial"))
		path = "/dev/virtio-ports/org.qemu.guest_agent.0";
	if (!path && !strcmp(o->method, "isa-serial"))
		path = "/dev/ttyS0";
	fprintf(f, "[general]\n");
	fprintf(f, "daemon=%s\n", o->daemonize ? "true" : "false");
	fprintf(f, "method=%s\n", o->method);
	if (path)
		fprintf(f, "path=%s\n", path);
	if (o->logfile)
		fprintf(f, "logfile=%s\n", o->logfile);
	fprintf(f, "pidfile=%s\n", o->pidfile);
	if (o->fsfreeze_hook)
		fprintf(f, "fsfreeze-hook=%s\n", o->fsfreeze_hook);
	fprintf(f, "statedir=%s\n", o->statedir);
	fprintf(f, "verbose=%s\n", o->verbose ? "true" : "false");
	fprintf(f, "retry-path=%s\n", o->retry_path ? "true" : "false");
	if (o->hook_timeout_s)
		fprintf(f, "hook-timeout=%d\n", o->hook_timeout_s);
	if (o->freeze_timeout_s)
		fprintf(f, "freeze-timeout=%d\n", o->freeze_timeout_s < 0 ? 0 : o->freeze_timeout_s);
	dump_list(f, "block-rpcs", &o->block_rpcs);
	if (o->allow_rpcs.n)
		dump_list(f, "allow-rpcs", &o->allow_rpcs);
}

void options_free(struct agent_options *o)
{
	free(o->method);
	free(o->path);
	free(o->logfile);
	free(o->pidfile);
	free(o->statedir);
	free(o->fsfreeze_hook);
	strlist_free(&o->block_rpcs);
	strlist_free(&o->allow_rpcs);
}
