// SPDX-License-Identifier: MIT
/*
 * buf: growable byte buffer (see buf.h).  Growth doubles, so appends are
 * amortised O(1); buf_clear() with a `keep` limit gives memory back after a
 * burst, which is how the agent returns to its idle footprint.
 *
 * buf_consume() only moves `data` forward (`skip` remembers by how much).
 * The dead prefix is reclaimed when room is needed and it is at least as
 * large as the live bytes, so the memmove is paid for by the bytes consumed
 * since the last one: draining a queue in pieces of any size is linear.
 * (Moving the whole backlog per partial write, as a plain memmove does, made
 * a 380 MB reply written 32 KiB at a time cost minutes of CPU.)
 */
#include "buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Move the contents back to the start of the allocation. */
static void compact(struct buf *b)
{
	char *base = b->data - b->skip;
	memmove(base, b->data, b->len + 1);
	b->data = base;
	b->cap += b->skip;
	b->skip = 0;
}

int buf_reserve(struct buf *b, size_t extra)
{
	if (extra > SIZE_MAX - b->len - 1)
		return -ENOMEM;
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	if (b->skip && b->skip >= b->len) {
		compact(b);
		if (need <= b->cap)
			return 0;
	}
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (cap > SIZE_MAX - b->skip)
		return -ENOMEM;
	char *p = realloc(b->data ? b->data - b->skip : NULL, b->skip + cap);
	if (!p)
		return -ENOMEM;
	b->data = p + b->skip;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	int r = buf_reserve(b, n);
	if (r < 0)
		return r;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_putc(struct buf *b, char c)
{
	return buf_append(b, &c, 1);
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return -EINVAL;
	int r = buf_reserve(b, (size_t)n);
	if (r < 0)
		return r;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

void buf_clear(struct buf *b, size_t keep)
{
	if (b->skip + b->cap > keep) {
		buf_free(b);
		return;
	}
	b->len = 0;
	if (b->data) {
		b->data -= b->skip;
		b->cap += b->skip;
		b->skip = 0;
		b->data[0] = '\0';
	}
}

void buf_consume(struct buf *b, size_t n)
{
	if (!b->data)
		return;
	if (n >= b->len) {
		b->data -= b->skip;
		b->cap += b->skip;
		b->skip = 0;
		b->len = 0;
	} else {
		b->data += n;
		b->len -= n;
		b->cap -= n;
		b->skip += n;
	}
	b->data[b->len] = '\0';
}

void buf_free(struct buf *b)
{
	free(b->data ? b->data - b->skip : NULL);
	b->data = NULL;
	b->len = b->cap = b->skip = 0;
}
