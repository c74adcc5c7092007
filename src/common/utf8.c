// SPDX-License-Identifier: MIT
/*
 * utf8: decode/encode with QEMU's (modified UTF-8) validity rules; see
 * utf8.h for what differs from textbook UTF-8 and why we care.
 *
 * Lead bytes F8..FD announce 5- and 6-byte sequences; we decode them far
 * enough to consume their continuation bytes and then reject the result as
 * beyond U+10FFFF, which is how the reference treats them too: the number
 * of bytes swallowed decides how many U+FFFD appear in an echoed error.
 */
#include "utf8.h"

bool utf8_is_valid_cp(int32_t cp)
{
	if (cp < 0 || cp > 0x10FFFF)
		return false;
	if (cp >= 0xD800 && cp <= 0xDFFF)
		return false; /* surrogate */
	if (cp >= 0xFDD0 && cp <= 0xFDEF)
		return false; /* noncharacter */
	if ((cp & 0xFFFE) == 0xFFFE)
		return false; /* noncharacter U+xFFFE / U+xFFFF */
	return true;
}

int32_t utf8_decode(const uint8_t *s, size_t n, size_t *used)
{
	static const int32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000, 0x200000, 0x4000000};
	*used = n ? 1 : 0;
	if (n == 0)
		return -1;
	uint8_t lead = s[0];
	if (lead < 0x80)
		return lead;
	if (lead >= 0xFE || (lead & 0x40) == 0)
		return -1; /* impossible byte, or a continuation byte first */

	unsigned len = 0;
	uint8_t mask = 0x80;
	while (lead & mask) {
		len++;
		mask >>= 1;
	}
	int32_t cp = lead & (mask - 1);
	for (unsigned i = 1; i < len; i++) {
		if (i >= n || (s[i] & 0xC0) != 0x80)
			return -1; /* truncated: *used covers what was well-formed */
		cp = (cp << 6) | (s[i] & 0x3F);
		*used = i + 1;
	}
	if (cp == 0 && len == 2)
		return 0; /* C0 80: modified UTF-8's NUL */
	if (cp < min_cp[len] || !utf8_is_valid_cp(cp))
		return -1;
	return cp;
}

size_t utf8_prefix(const uint8_t *s, size_t n, size_t max)
{
	if (n <= max)
		return n;
	size_t p = 0, used;
	while (p < n) {
		(void)utf8_decode(s + p, n - p, &used);
		if (p + used > max)
			break;
		p += used;
	}
	return p;
}

size_t utf8_encode(char out[static 4], int32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}
