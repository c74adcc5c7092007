/* SPDX-License-Identifier: MIT */
/*
 * fault: crash injection for the crash-safety tests.
 *
 * QUIESCE_FAULT_KILL_AFTER=N makes the process SIGKILL itself right after
 * its N-th durable step (every rename, unlink and move that changes what
 * the repository holds).  Unset, a fault point is one relaxed atomic load.
 */
#ifndef QUIESCE_FAULT_H
#define QUIESCE_FAULT_H

void fault_init(void);
void fault_point(void);

#endif
