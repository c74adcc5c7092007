/* SPDX-License-Identifier: MIT */
/*
 * buf: a growable byte buffer.  Always NUL-terminated after a successful
 * append (the NUL is not counted in len), so text can be used as a C string.
 *
 * It doubles as a FIFO: buf_consume() drops bytes from the front in O(1)
 * (amortised), so a queue written out in small pieces costs time linear in
 * its size however it is drained.
 */
#ifndef QUIESCE_BUF_H
#define QUIESCE_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;  /* the contents, data[0..len) */
	size_t len;
	size_t cap;  /* usable bytes from data on (len + 1 <= cap when allocated) */
	size_t skip; /* consumed bytes still allocated before data */
};

#define BUF_INIT {NULL, 0, 0, 0}

/* Make room for `extra` more bytes (plus the NUL).  0 or -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Forget the contents; keep the storage unless it is larger than `keep`
 * bytes, in which case it is freed (so one hostile message does not pin
 * memory forever). */
void buf_clear(struct buf *b, size_t keep);
/* Drop the first n bytes: O(1); the space is reused once the dropped
 * prefix outgrows what is left, so each byte is moved at most once. */
void buf_consume(struct buf *b, size_t n);
void buf_free(struct buf *b);

#endif
