// SPDX-License-Identifier: MIT
/* fdio: capped whole-file reads (see fdio.h). */
#include "fdio.h"

#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int fdio_read_file(const char *path, size_t max, struct buf *out, struct err *e)
{
	out->len = 0;
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return err_sys(e, -errno, "cannot open '%s'", path);
	for (;;) {
		if (buf_reserve(out, 65536) < 0)
			return err_set(e, -ENOMEM, "out of memory reading '%s'", path);
		ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_sys(e, -errno, "cannot read '%s'", path);
		if (n == 0)
			break;
		out->len += (size_t)n;
		if (out->len > max)
			return err_set(e, -EFBIG, "'%s' is larger than %zu bytes", path, max);
	}
	out->data[out->len] = '\0';
	return 0;
}
