/* SPDX-License-Identifier: MIT */
/*
 * rpc-exchange: feed request bytes through the real stream parser and
 * dispatcher and return the reply bytes — what a host would read.  Shared
 * by the unit tests that drive commands (test-rpc.c, test-freeze.c).
 */
#ifndef QUIESCE_TEST_RPC_EXCHANGE_H
#define QUIESCE_TEST_RPC_EXCHANGE_H

#include "buf.h"
#include "jstream.h"
#include "rpc.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

/* The replies to `in`, NUL-terminated; the caller frees. */
static inline char *exchange(struct agent *a, const char *in)
{
	struct jstream_limits lim = JSTREAM_QEMU_LIMITS;
	struct jstream *js = jstream_new(&lim);
	struct buf out = BUF_INIT;
	struct jstream_event ev;
	size_t n = strlen(in);
	while (jstream_feed(js, &in, &n, &ev))
		rpc_handle(a, &ev, &out);
	jstream_free(js);
	buf_putc(&out, '\0');
	return out.data;
}

/* One TAP test: the replies to `in` are exactly `want`. */
static inline void check(struct agent *a, const char *in, const char *want)
{
	char *got = exchange(a, in);
	is_str(got, want, in);
	free(got);
}

#endif
