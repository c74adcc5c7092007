// SPDX-License-Identifier: MIT
/* source: file, block device and NBD sources (see source.h). */
#include "source.h"

#include "xerr.h"

#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

bool source_is_nbd_uri(const char *spec)
{
	return !strncmp(spec, "nbd://", 6) || !strncmp(spec, "nbds://", 7) || !strncmp(spec, "nbd+unix://", 11) ||
	       !strncmp(spec, "nbds+unix://", 12) || !strncmp(spec, "nbd+vsock://", 12);
}

void source_close(struct source *s)
{
	if (!s)
		return;
	s->ops->close(s);
	free(s->spec);
	free(s);
}

/* ---- files and block devices ---- */

struct file_src {
	int fd;
	bool holes; /* SEEK_DATA answers meaningfully (regular files) */
};

static int file_pread(struct source *s, void *buf, size_t len, uint64_t off, struct err *e)
{
	struct file_src *f = s->priv;
	char *p = buf;
	while (len) {
		ssize_t n = pread(f->fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return xerr_sys(e, QX_SOURCE, errno, "cannot read %s at offset %llu", s->spec,
					(unsigned long long)off);
		if (n == 0)
			return xerr(e, QX_SOURCE, "%s ended at %llu, before its size %llu (did it shrink?)", s->spec,
				    (unsigned long long)off, (unsigned long long)s->size);
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int file_zero_until(struct source *s, uint64_t off, uint64_t *end, struct err *e)
{
	(void)e;
	struct file_src *f = s->priv;
	*end = off;
	if (!f->holes)
		return 0;
	off_t d = lseek(f->fd, (off_t)off, SEEK_DATA);
	if (d < 0 && errno == ENXIO) /* no data from here to the end */
		*end = s->size;
	else if (d >= 0 && (uint64_t)d > off)
		*end = (uint64_t)d < s->size ? (uint64_t)d : s->size;
	return 0; /* any other answer: just read it */
}

static void file_close(struct source *s)
{
	struct file_src *f = s->priv;
	close(f->fd);
	free(f);
}

static const struct source_ops file_ops = {file_pread, file_zero_until, file_close};

static int open_file(struct source *s, struct err *e)
{
	int fd = open(s->spec, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return xerr_sys(e, QX_SOURCE, errno, "cannot open %s", s->spec);
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return xerr_sys(e, QX_SOURCE, errno, "cannot stat %s", s->spec);
	}
	struct file_src *f = calloc(1, sizeof(*f));
	if (!f) {
		close(fd);
		return xerr(e, QX_FAIL, "out of memory");
	}
	f->fd = fd;
	if (S_ISREG(st.st_mode)) {
		s->size = (uint64_t)st.st_size;
		f->holes = true;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &s->size) < 0) {
			close(fd);
			free(f);
			return xerr_sys(e, QX_SOURCE, errno, "cannot get the size of %s", s->spec);
		}
	} else {
		close(fd);
		free(f);
		return xerr(e, QX_SOURCE, "%s is neither a regular file nor a block device", s->spec);
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	s->priv = f;
	s->ops = &file_ops;
	return 0;
}

/* ---- NBD ---- */

/* Block status comes in extents of any length; keep the last answer and
 * ask again only past its end. */
struct nbd_src {
	struct nbd_handle *h;
	bool meta;
	uint64_t max_req;
	uint64_t cache_off;
	size_t n;
	uint64_t *len;   /* n extents from cache_off */
	uint32_t *flags;
};

static int nbd_src_pread(struct source *s, void *buf, size_t len, uint64_t off, struct err *e)
{
	struct nbd_src *n = s->priv;
	char *p = buf;
	while (len) {
		size_t piece = len < n->max_req ? len : n->max_req;
		if (nbd_pread(n->h, p, piece, off, 0) < 0)
			return xerr(e, QX_SOURCE, "cannot read %s at offset %llu: %s", s->spec, (unsigned long long)off,
				    nbd_get_error());
		p += piece;
		len -= piece;
		off += piece;
	}
	return 0;
}

static int extent_cb(void *user, const char *metacontext, uint64_t offset, uint32_t *entries, size_t nr,
		     int *error)
{
	(void)offset;
	(void)error;
	struct nbd_src *n = user;
	if (strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
		return 0;
	size_t pairs = nr / 2;
	uint64_t *len = realloc(n->len, (n->n + pairs) * sizeof(*len));
	uint32_t *flags = len ? realloc(n->flags, (n->n + pairs) * sizeof(*flags)) : NULL;
	if (len)
		n->len = len;
	if (!len || !flags)
		return -1;
	n->flags = flags;
	for (size_t i = 0; i < pairs; i++) {
		n->len[n->n] = entries[2 * i];
		n->flags[n->n] = entries[2 * i + 1];
		n->n++;
	}
	return 0;
}

static uint64_t cache_end(const struct nbd_src *n)
{
	uint64_t end = n->cache_off;
	for (size_t i = 0; i < n->n; i++)
		end += n->len[i];
	return end;
}

/* Append the extents of [off, off+count) to the cache (contiguous with it). */
static int fetch_extents(struct source *s, uint64_t off, uint64_t count, struct err *e)
{
	struct nbd_src *n = s->priv;
	if (count > UINT32_MAX)
		count = UINT32_MAX;
	if (nbd_block_status(n->h, count, off, (nbd_extent_callback){.callback = extent_cb, .user_data = n}, 0) < 0)
		return xerr(e, QX_SOURCE, "block status of %s failed: %s", s->spec, nbd_get_error());
	return 0;
}

/* Walk the cached extents from `off` while they read as zero, asking the
 * server for more 1 GiB windows at a time (at most 64 GiB an answer, so a
 * caller checking for interrupts is not kept waiting). */
static int nbd_src_zero_until(struct source *s, uint64_t off, uint64_t *end, struct err *e)
{
	struct nbd_src *n = s->priv;
	*end = off;
	if (!n->meta || off >= s->size)
		return 0;
	uint64_t pos = off, limit = s->size - off < (64ull << 30) ? s->size : off + (64ull << 30);
	while (pos < limit) {
		if (pos < n->cache_off || pos >= cache_end(n)) {
			n->n = 0;
			n->cache_off = pos;
			uint64_t rest = s->size - pos;
			if (fetch_extents(s, pos, rest < (1ull << 30) ? rest : (1ull << 30), e) < 0)
				return -QX_SOURCE;
			if (cache_end(n) <= pos)
				break; /* the server said nothing useful: just read */
		}
		uint64_t p = n->cache_off;
		size_t i = 0;
		while (i < n->n && p + n->len[i] <= pos)
			p += n->len[i++];
		for (; i < n->n; i++) {
			if (!(n->flags[i] & LIBNBD_STATE_ZERO))
				goto done;
			p += n->len[i];
			pos = p;
		}
	}
done:
	*end = pos < s->size ? pos : s->size;
	return 0;
}

static void nbd_src_close(struct source *s)
{
	struct nbd_src *n = s->priv;
	nbd_shutdown(n->h, 0);
	nbd_close(n->h);
	free(n->len);
	free(n->flags);
	free(n);
}

static const struct source_ops nbd_ops = {nbd_src_pread, nbd_src_zero_until, nbd_src_close};

static int open_nbd(struct source *s, struct err *e)
{
	struct nbd_src *n = calloc(1, sizeof(*n));
	if (!n || !(n->h = nbd_create())) {
		free(n);
		return xerr(e, QX_FAIL, "out of memory");
	}
	nbd_add_meta_context(n->h, LIBNBD_CONTEXT_BASE_ALLOCATION);
	int64_t size;
	if (nbd_connect_uri(n->h, s->spec) < 0 || (size = nbd_get_size(n->h)) < 0) {
		int rc = xerr(e, QX_SOURCE, "cannot open %s: %s", s->spec, nbd_get_error());
		nbd_close(n->h);
		free(n);
		return rc;
	}
	s->size = (uint64_t)size;
	n->meta = nbd_can_meta_context(n->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
	int64_t max = nbd_get_block_size(n->h, LIBNBD_SIZE_MAXIMUM);
	n->max_req = max > 0 && max < (32 << 20) ? (uint64_t)max : (32 << 20);
	s->priv = n;
	s->ops = &nbd_ops;
	return 0;
}

int source_open(const char *spec, struct source **out, struct err *e)
{
	struct source *s = calloc(1, sizeof(*s));
	if (!s || !(s->spec = strdup(spec))) {
		free(s);
		return xerr(e, QX_FAIL, "out of memory");
	}
	int rc = source_is_nbd_uri(spec) ? open_nbd(s, e) : open_file(s, e);
	if (rc < 0) {
		free(s->spec);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}
