// SPDX-License-Identifier: MIT
/* Unit tests for utf8: QEMU's modified-UTF-8 validity rules. */
#include "tap.h"
#include "utf8.h"

static const struct {
	const char *name;
	const char *bytes;
	size_t len;
	int32_t cp;
	size_t used;
} cases[] = {
	{"ascii", "A", 1, 'A', 1},
	{"two-byte", "\xc3\xa9", 2, 0xE9, 2},
	{"three-byte", "\xe2\x82\xac", 3, 0x20AC, 3},
	{"four-byte", "\xf0\x9f\x98\x80", 4, 0x1F600, 4},
	{"modified-utf8 NUL", "\xc0\x80", 2, 0, 2},
	{"overlong slash", "\xc0\xaf", 2, -1, 2},
	{"lone continuation", "\x80", 1, -1, 1},
	{"truncated", "\xe2\x82", 2, -1, 2},
	{"truncated by ascii", "\xe2" "A", 2, -1, 1},
	{"surrogate", "\xed\xa0\x80", 3, -1, 3},
	{"noncharacter FFFE", "\xef\xbf\xbe", 3, -1, 3},
	{"noncharacter FDD0", "\xef\xb7\x90", 3, -1, 3},
	{"beyond 10FFFF", "\xf4\x90\x80\x80", 4, -1, 4},
	{"five-byte lead", "\xf8\x88\x80\x80\x80", 5, -1, 5},
	{"0xFF", "\xff", 1, -1, 1},
	{"0xFE", "\xfe", 1, -1, 1},
};

int main(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t used;
		int32_t cp = utf8_decode((const uint8_t *)cases[i].bytes, cases[i].len, &used);
		ok(cp == cases[i].cp && used == cases[i].used, "decode %s (cp %d used %zu)",
		   cases[i].name, cp, used);
	}
	char out[4];
	ok(utf8_encode(out, 0x1F600) == 4 && !memcmp(out, "\xf0\x9f\x98\x80", 4), "encode 4-byte");
	ok(utf8_encode(out, 0xE9) == 2 && !memcmp(out, "\xc3\xa9", 2), "encode 2-byte");
	ok(!utf8_is_valid_cp(0xDC00) && !utf8_is_valid_cp(0x10FFFF) && utf8_is_valid_cp(0x10FFFD),
	   "validity of boundary code points");

	/* utf8_prefix: where quoted input may be cut */
	const uint8_t *e = (const uint8_t *)"ab\xc3\xa9\xe2\x82\xac\x80\x80";
	ok(utf8_prefix(e, 9, 100) == 9, "prefix: shorter than max is whole");
	ok(utf8_prefix(e, 9, 3) == 2 && utf8_prefix(e, 9, 4) == 4, "prefix: never splits U+00E9");
	ok(utf8_prefix(e, 9, 6) == 4 && utf8_prefix(e, 9, 7) == 7, "prefix: never splits U+20AC");
	ok(utf8_prefix(e, 9, 8) == 8, "prefix: invalid bytes count one each");
	ok(utf8_prefix((const uint8_t *)"\xe2\x82x", 3, 1) == 0,
	   "prefix: a truncated sequence is not split either");
	return tap_done();
}
