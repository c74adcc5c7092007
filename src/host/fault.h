/* SPDX-License-Identifier: MIT */
/*
 * fault: crash and timing injection for the crash-safety and VM tests.
 *
 * QUIESCE_FAULT_KILL_AFTER=N makes the process SIGKILL itself right after
 * its N-th durable step (every rename, unlink and move that changes what
 * the repository holds).  Unset, a fault point is one relaxed atomic load.
 *
 * QUIESCE_FAULT_HOLD_AT=STEP:GATE[,STEP:GATE...] makes the process stop at
 * the named step: it creates GATE.reached, then waits until GATE exists (or
 * a signal arrives).  Tests use it to act exactly at a step — send a signal
 * inside the frozen window, fill the scratch filesystem during the read —
 * instead of sleeping and hoping.  The steps of a VM backup are listed in
 * docs/vm-backup.md.
 *
 * QUIESCE_FAULT_LOSE_REPLY=CMD[,CMD...] makes the QMP client send CMD and
 * then report a timeout without reading its reply, as if QEMU had answered
 * after our deadline (the reply still comes and is skipped as stale).
 *
 * QUIESCE_FAULT_SKIP=WHAT[,WHAT...] leaves out a safeguard, to test the one
 * behind it: "room-watch" (the scratch room check while reading: as if the
 * filesystem filled between two looks).
 */
#ifndef QUIESCE_FAULT_H
#define QUIESCE_FAULT_H

#include <signal.h>
#include <stdbool.h>

void fault_init(void);
void fault_point(void);
/* Hold at `step` if QUIESCE_FAULT_HOLD_AT names it; returns early once
 * *stop is set (a signal handler's flag). */
void fault_hold(const char *step, volatile sig_atomic_t *stop);
/* Whether QUIESCE_FAULT_LOSE_REPLY names `cmd`. */
bool fault_lose_reply(const char *cmd);
/* Whether QUIESCE_FAULT_SKIP names `what`. */
bool fault_skip(const char *what);

#endif
