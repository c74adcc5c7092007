// SPDX-License-Identifier: MIT
/*
 * Unit tests for buf, in particular its use as the agent's output queue:
 * consuming from the front must not move what is left (that made writing a
 * large reply in small pieces quadratic), and any mix of appends and
 * consumes must keep the contents and the NUL terminator right.
 */
#include "buf.h"
#include "tap.h"

#include <stdint.h>
#include <stdlib.h>

static void test_consume_moves_nothing(void)
{
	struct buf b = BUF_INIT;
	const size_t total = 8u << 20, piece = 32u << 10;
	char *src = malloc(total);
	for (size_t i = 0; i < total; i++)
		src[i] = (char)('a' + i % 26);
	ok(buf_append(&b, src, total) == 0, "append 8 MiB");
	bool stayed = true, right = true;
	for (size_t done = 0; done + piece < total; done += piece) {
		const char *before = b.data;
		buf_consume(&b, piece);
		/* O(1): the rest is where it was, only the start moved */
		stayed &= b.data == before + piece;
		right &= b.len == total - done - piece && b.data[0] == src[done + piece] &&
			 b.data[b.len] == '\0';
	}
	ok(stayed, "draining in 32 KiB pieces never moves the remaining bytes");
	ok(right, "contents and terminator stay right while draining");
	buf_consume(&b, b.len);
	ok(b.len == 0 && b.data && b.data[0] == '\0', "consuming everything leaves an empty string");
	ok(b.skip == 0, "an emptied queue starts again at the front of its storage");
	free(src);
	buf_free(&b);
}

/* A queue fed and drained in random-sized steps against a plain model. */
static void test_fifo_model(void)
{
	struct buf b = BUF_INIT;
	size_t cap = 1u << 22, head = 0, tail = 0;
	char *model = malloc(cap);
	uint32_t seed = 12345;
	bool right = true;
	size_t moved_max = 0;
	for (int round = 0; round < 20000 && right; round++) {
		seed = seed * 1103515245u + 12345u;
		size_t n = (seed >> 8) % 3000;
		if ((seed >> 4) & 1) {
			if (tail + n > cap)
				break;
			char tmp[3000];
			for (size_t i = 0; i < n; i++)
				tmp[i] = model[tail + i] = (char)(seed + i);
			right &= buf_append(&b, tmp, n) == 0;
			tail += n;
		} else {
			buf_consume(&b, n);
			head = head + n > tail ? tail : head + n;
		}
		right &= b.len == tail - head && (b.len == 0 || !memcmp(b.data, model + head, b.len)) &&
			 (!b.data || b.data[b.len] == '\0');
		if (b.skip > moved_max)
			moved_max = b.skip;
	}
	ok(right, "random appends and consumes keep exactly the unconsumed bytes");
	ok(moved_max > 0, "consumed space is reused lazily (skip grew to %zu)", moved_max);
	free(model);
	buf_free(&b);
}

static void test_clear_gives_memory_back(void)
{
	struct buf b = BUF_INIT;
	buf_reserve(&b, 1u << 20);
	buf_puts(&b, "hello world");
	buf_consume(&b, 6);
	buf_clear(&b, 1u << 16);
	ok(b.data == NULL && b.cap == 0 && b.skip == 0, "clear frees storage above the keep size");
	buf_puts(&b, "hello world");
	buf_consume(&b, 6);
	buf_clear(&b, 1u << 16);
	ok(b.data && b.len == 0 && b.skip == 0 && b.data[0] == '\0', "clear keeps small storage");
	ok(buf_printf(&b, "%d-%s", 42, "x") == 0 && !strcmp(b.data, "42-x"), "printf after clear");
	buf_free(&b);
}

int main(void)
{
	test_consume_moves_nothing();
	test_fifo_model();
	test_clear_gives_memory_back();
	return tap_done();
}
