/* SPDX-License-Identifier: MIT */
/*
 * utf8: decoding with the rules QEMU's JSON layer applies, so that what we
 * accept, reject and replace with U+FFFD matches qemu-ga byte for byte.
 *
 * Those rules are stricter than plain UTF-8 in one place (noncharacters
 * U+FDD0..U+FDEF and U+xFFFE/U+xFFFF are invalid) and looser in one (the
 * overlong pair C0 80 is accepted as U+0000, "modified UTF-8").
 */
#ifndef QUIESCE_UTF8_H
#define QUIESCE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decode one code point from s[0..n).  Returns it, or -1 for an invalid
 * sequence.  *used is set to the bytes consumed (>= 1 when n >= 1): for an
 * invalid sequence, the lead byte plus the well-formed continuation bytes
 * that followed it. */
int32_t utf8_decode(const uint8_t *s, size_t n, size_t *used);

/* Whether cp may appear in a string (not a surrogate, noncharacter or
 * beyond U+10FFFF). */
bool utf8_is_valid_cp(int32_t cp);

/* The length of the longest prefix of s[0..n) that is at most max bytes
 * long and does not cut a sequence utf8_decode() would take as one (valid
 * or not): where quoted input is cut short, no character is split. */
size_t utf8_prefix(const uint8_t *s, size_t n, size_t max);

/* Encode a valid code point; returns the length (1..4).  U+0000 is encoded
 * as a single NUL byte. */
size_t utf8_encode(char out[static 4], int32_t cp);

#endif
