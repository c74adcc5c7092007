// SPDX-License-Identifier: MIT
/* Unit tests for keyfile parsing and qemu-ga.conf handling. */
#include "options.h"
#include "tap.h"

#include <stdlib.h>

static int load(struct agent_options *o, const char *text, struct err *e)
{
	return options_load_text(o, text, strlen(text), "test.conf", e);
}

int main(void)
{
	struct agent_options o = {0};
	struct err e = {0};
	int r = load(&o,
		     "# comment\n[general]\n daemon = true\nmethod=unix-listen\npath=/tmp/s\n"
		     "verbose=1\nblock-rpcs=guest-ping,guest-get-time\nallow-rpcs=guest-sync\n"
		     "fsfreeze-hook=/etc/qemu/fsfreeze-hook\n[other]\nmethod=ignored\n",
		     &e);
	ok(r == 0, "valid config loads (%s)", e.msg);
	ok(o.daemonize && o.verbose, "booleans true/1");
	is_str(o.method, "unix-listen", "method");
	is_str(o.path, "/tmp/s", "path");
	ok(o.block_rpcs.n == 2 && strlist_has(&o.block_rpcs, "guest-get-time"), "block-rpcs split on commas");
	ok(o.allow_rpcs.n == 1, "allow-rpcs");
	is_str(o.fsfreeze_hook, "/etc/qemu/fsfreeze-hook", "fsfreeze-hook");
	options_free(&o);

	struct {
		const char *text;
		const char *msg;
	} bad[] = {
		{"daemon=true\n", "does not start with a group"},
		{"[general]\ndaemon=yes\n", "needs true or false"},
		{"[general\n", "invalid group name"},
		{"[general]\njunk\n", "is not a group, key or comment"},
		{"[general]\n=x\n", "empty key"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct agent_options b = {0};
		err_clear(&e);
		r = load(&b, bad[i].text, &e);
		ok(r < 0 && strstr(e.msg, bad[i].msg) && strstr(e.msg, "test.conf"),
		   "bad config %zu rejected: %s", i, e.msg);
		options_free(&b);
	}

	struct agent_options c = {0};
	char *argv[] = {"quiesce-agent", "-m", "unix-listen", "-p", "/tmp/x", "-b", "guest-ping",
			"-b", "guest-info", "-F", "-t", "/var/tmp", "-c", "/nonexistent/quiesce.conf", NULL};
	err_clear(&e);
	r = options_parse(&c, 14, argv, &e);
	ok(r < 0 && strstr(e.msg, "/nonexistent/quiesce.conf"), "a missing -c file is fatal: %s", e.msg);
	options_free(&c);

	struct agent_options d = {0};
	char *argv2[] = {"quiesce-agent", "-m", "unix-listen", "-p", "/tmp/x", "-b", "guest-ping",
			 "-b", "guest-info", "-F", "-t", "/var/tmp", NULL};
	setenv("QGA_CONF", "/nonexistent/default.conf", 1);
	r = options_parse(&d, 12, argv2, &e);
	ok(r == OPTIONS_RUN, "flags parse with a missing default config");
	ok(d.block_rpcs.n == 2, "repeated -b accumulates");
	is_str(d.fsfreeze_hook, "/etc/qemu/fsfreeze-hook", "-F alone means the default hook");
	is_str(d.statedir, "/var/tmp", "statedir");
	options_free(&d);
	return tap_done();
}
