/* SPDX-License-Identifier: MIT */
/*
 * chan: the byte channel to the host, whatever carries it.
 *
 * Methods as qemu-ga: virtio-serial (a char device; the host may come and
 * go), isa-serial (a tty), unix-listen and vsock-listen (one client at a
 * time; later connects wait in the backlog), or a socket passed by systemd.
 * The main loop asks chan for one pollfd, and hands poll's answer back; chan
 * reports connects, data and disconnects.  A disconnect means "forget the
 * partial input": a new client never inherits the previous one's bytes.
 */
#ifndef QUIESCE_CHAN_H
#define QUIESCE_CHAN_H

#include "err.h"

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum chan_method {
	CHAN_VIRTIO_SERIAL,
	CHAN_ISA_SERIAL,
	CHAN_UNIX_LISTEN,
	CHAN_VSOCK_LISTEN,
};

enum chan_event {
	CHAN_IDLE,         /* nothing for the caller */
	CHAN_CONNECTED,    /* a client arrived (listen methods) */
	CHAN_DATA,         /* bytes were read */
	CHAN_DISCONNECTED, /* the client or host went away */
	CHAN_FAILED,       /* the channel itself failed (device gone) */
};

struct chan;

int chan_method_parse(const char *name, enum chan_method *ret);
const char *chan_method_name(enum chan_method m);
/* The default path of a method, or NULL if it has none. */
const char *chan_default_path(enum chan_method m);

/* Open the channel.  If systemd passed a listening socket, it is used and
 * method/path are ignored, as qemu-ga does. */
int chan_open(struct chan **ret, enum chan_method m, const char *path, struct err *e);
void chan_close(struct chan *c);

/* Fill pfd for the next poll.  want_input false pauses reading (output
 * backlog); want_output asks for POLLOUT.  *timeout_ms is lowered if chan
 * needs a periodic look (host away on virtio-serial). */
void chan_prepare(struct chan *c, struct pollfd *pfd, bool want_input, bool want_output,
		  int *timeout_ms);

/* After poll: act on revents (0 after a timeout).  For CHAN_DATA, up to cap
 * bytes are in buf and *n is set. */
enum chan_event chan_process(struct chan *c, short revents, char *buf, size_t cap, size_t *n,
			     struct err *e);

/* Write what can be written now: bytes written, or negative errno
 * (-EAGAIN: try when writable; -EPIPE etc.: the client is gone). */
ssize_t chan_write(struct chan *c, const char *p, size_t n);

/* SIGIO arrived: a virtio-serial host may have connected. */
void chan_wakeup(struct chan *c);

/* Whether bytes can be exchanged now (a client is connected / host open). */
bool chan_is_connected(const struct chan *c);

#endif
