/* SPDX-License-Identifier: MIT */
/*
 * Scope-bound cleanup for local scratch resources (the systemd idiom):
 * `_cleanup_free_ char *p = NULL;` frees p when it goes out of scope.
 * Ownership is handed out with take_ptr()/take_fd().
 */
#ifndef QUIESCE_CLEANUP_H
#define QUIESCE_CLEANUP_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void cleanup_freep(void *p)
{
	free(*(void **)p);
}
static inline void cleanup_closep(int *fd)
{
	if (*fd >= 0)
		(void)close(*fd);
}
static inline void cleanup_fclosep(FILE **f)
{
	if (*f)
		(void)fclose(*f);
}
static inline void cleanup_closedirp(DIR **d)
{
	if (*d)
		(void)closedir(*d);
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(cleanup_freep)
#define _cleanup_close_ _cleanup_(cleanup_closep)
#define _cleanup_fclose_ _cleanup_(cleanup_fclosep)
#define _cleanup_closedir_ _cleanup_(cleanup_closedirp)

static inline void *take_ptr_impl(void **p)
{
	void *v = *p;
	*p = NULL;
	return v;
}
#define take_ptr(p) take_ptr_impl((void **)&(p))

static inline int take_fd(int *fd)
{
	int v = *fd;
	*fd = -1;
	return v;
}

#endif
