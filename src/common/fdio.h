/* SPDX-License-Identifier: MIT */
/*
 * fdio: whole-file reads with a size cap, for the small text files the
 * agent parses (mountinfo, its config, os-release).
 */
#ifndef QUIESCE_FDIO_H
#define QUIESCE_FDIO_H

#include "buf.h"
#include "err.h"

#include <stddef.h>

/* Read all of path into out (replacing its contents).  A file larger than
 * max bytes is an error (-EFBIG), so is any read error; e names the file.
 * ENOENT is returned as -ENOENT for callers that treat it as "absent". */
int fdio_read_file(const char *path, size_t max, struct buf *out, struct err *e);

#endif
