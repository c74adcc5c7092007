// SPDX-License-Identifier: MIT
/*
 * fuzz-rpc: untrusted host bytes through the whole request path: jstream
 * framing and parsing, dispatch, argument checking and reply rendering.
 * The input is fed in pieces whose sizes come from the input itself, so
 * split-message paths are explored too, and so is the size of the pieces
 * jstream hands json-c.  Only side-effect-free commands are allowed; the
 * others still exercise the "disabled" path.
 */
#include "agent.h"
#include "jstream.h"
#include "rpc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const safe[] = {"guest-sync", "guest-sync-delimited", "guest-ping",
					   "guest-info"};
	struct agent a = {0};
	for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
		strlist_add(&a.allowed, safe[i]);
	if (size && data[0] == 'F')
		a.freezer.frozen = true; /* also explore the frozen-state filter */

	/* small, so limits are reachable; json-c gets the text in pieces of 1..16
	 * bytes (from the input), so every split of it is tried */
	struct jstream_limits lim = {1 << 16, 4096, 64, size > 1 ? (data[1] & 15u) + 1 : 1};
	struct jstream *js = jstream_new(&lim);
	struct buf out = BUF_INIT;
	size_t pos = 0, step = 1;
	while (js && pos < size) {
		size_t n = step < size - pos ? step : size - pos;
		const char *p = (const char *)data + pos;
		size_t left = n;
		struct jstream_event ev;
		while (jstream_feed(js, &p, &left, &ev))
			rpc_handle(&a, &ev, &out);
		pos += n;
		step = (step * 7 + data[pos - 1]) % 97 + 1;
		buf_clear(&out, 1 << 16);
	}
	jstream_free(js);
	buf_free(&out);
	strlist_free(&a.allowed);
	return 0;
}
