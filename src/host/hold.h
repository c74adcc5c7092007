/* SPDX-License-Identifier: MIT */
/*
 * hold: stop at a named step of a repository command until a test says go
 * (docs/repository.md, Fault injection).
 *
 * QUIESCE_FAULT_HOLD_AT=STEP:GATE[,STEP:GATE...]: at STEP the process
 * creates GATE.reached and waits until GATE exists (or *stop is set by a
 * signal).  Tests of gc and prune beside running backups and restores use
 * it to act at exactly the worst moment instead of sleeping and hoping.
 * Same syntax as the VM backup's steps (fault_hold), so one variable can
 * name steps of both.  Unset, a hold is one getenv.
 */
#ifndef QUIESCE_HOLD_H
#define QUIESCE_HOLD_H

#include <signal.h>

void hold_at(const char *step, volatile sig_atomic_t *stop);

#endif
