"""qemu-ga's parser limits: nesting depth 1024, 2M tokens, 64 MiB of token text; and
what one message may cost to answer (quoted input, many colliding keys).

Each limit gives an error reply and resets the parser; what follows the failing token
is parsed afresh (so the rest of a too-deep `[[[...]]]` gives one "expecting value" per
closer), and the agent answers a guest-ping afterwards.  Measured against qemu-ga 7.2
on 2 cores: the 64 MiB cases take about 0.5-1.7 s each, the token-count cases about
0.6 s, so none is marked slow.

Exact boundaries (found by probing qemu-ga 7.2, matching json-streamer.c):
  size   a token is refused when (text of the tokens so far + this token + 1) > 64 MiB;
         the lexer also cuts a single token at 64 MiB + 1 bytes;
  count  the 2,097,153rd token of a message is refused;
  depth  an opening bracket/brace that makes the depth 1025 is refused.

Cost (docs/compat.md "Error texts quote at most 256 bytes of input", "Which of many
colliding arguments is named"): ours quotes at most 256 bytes of client input in an
error, qemu-ga all of it; with more than ~1800 argument keys that share one g_str_hash,
ours names the first unexpected one in QDict order, qemu-ga the first of its GLib hash
table (after seconds to hours of CPU).  Up to the cap, and for keys that do not
collide by design, both send the same bytes.
"""
import random
import string

import pytest

import msgcost
from cases import C, cmd, params, run_case

MiB = 1 << 20
PING = b'{"execute":"guest-ping","id":"after"}'
ARG_X = b'{"execute":"guest-ping","arguments":{"x":"'   # 41 bytes of tokens before the string


def ping_id(raw):
    return b'{"execute":"guest-ping","id":' + raw + b"}"


# Steps are lambdas so the big inputs are built only when their case runs.
CASES = [
    # --- nesting
    C("limit-nesting-1024-in-object", [lambda: ping_id(b"[" * 1023 + b"]" * 1023), PING]),
    C("limit-nesting-1025-in-object", [lambda: ping_id(b"[" * 1024 + b"]" * 1024), PING]),
    C("limit-nesting-1024-array", [lambda: b"[" * 1024 + b"]" * 1024, PING]),
    C("limit-nesting-1025-array", [lambda: b"[" * 1025 + b"]" * 1025, PING]),
    C("limit-nesting-1025-objects", [lambda: b'{"a":' * 1025 + b"1" + b"}" * 1025, PING]),
    C("limit-nesting-1025-unclosed", [lambda: b"[" * 1025, PING]),
    C("limit-nesting-mixed-1025", [lambda: b'{"execute":"guest-ping","id":' + b'[{"a":' * 512 + b"1" + b"}]" * 512 + b"}", PING]),
    # --- token count
    C("limit-tokens-2M-exact", [lambda: b"[" + b"0," * 1048574 + b"[]]", PING]),
    C("limit-tokens-2M-plus-1", [lambda: b"[" + b"0," * 1048576, PING]),
    C("limit-tokens-over-in-object", [lambda: b'{"execute":"guest-ping","id":[' + b"0," * 1048576 + b"0]}", PING]),
    # --- token text size
    C("limit-size-64MiB-max", [lambda: ARG_X + b"x" * (64 * MiB - 46) + b'"}}', PING]),
    C("limit-size-64MiB-plus-1", [lambda: ARG_X + b"x" * (64 * MiB - 45) + b'"}}', PING]),
    C("limit-size-64MiB-plus-2", [lambda: ARG_X + b"x" * (64 * MiB - 44) + b'"}}', PING]),
    C("limit-size-65MiB-string", [lambda: ping_id(b'"' + b"x" * (65 * MiB) + b'"') + b"\n", PING]),
    C("limit-size-65MiB-number", [lambda: ping_id(b"1" * (65 * MiB)), PING]),
    C("limit-size-many-small-tokens", [lambda: b'{"execute":"guest-ping","id":[' + (b'"' + b"y" * 1022 + b'",') * 65600 + b"1]}", PING]),
    # --- quoted input: the same up to 256 bytes, then ours cuts (registered)
    C("quote-stray-256-bytes", [b'"' + b"a" * 254 + b"\n"]),
    C("quote-stray-257-bytes", [b'"' + b"a" * 255 + b"\n"]),
    C("quote-stray-1MiB-0x80", [lambda: msgcost.stray_token(MiB)]),
    C("quote-command-256-bytes", [cmd("n" * 256)]),
    C("quote-command-257-bytes", [cmd("n" * 257)]),
    C("quote-member-257-bytes", [b'{"execute":"guest-ping","' + b"m" * 257 + b'":1}']),
    C("quote-parameter-257-bytes", [cmd("guest-ping", b'{"' + b"p" * 257 + b'":1}')]),
    # --- which of many unexpected arguments is named (GLib hash-table order)
    C("args-1024-colliding-keys", [lambda: msgcost.colliding_arguments(1024)]),
    C("args-4096-colliding-keys", [lambda: msgcost.colliding_arguments(4096)]),
    C("args-5000-random-keys", [lambda: cmd("guest-ping", random_members(5000))]),
    C("args-sync-id-and-3000-random-keys", [lambda: cmd("guest-sync", b'{"id":1,' + random_members(3000)[1:])]),
]


def random_members(n, seed=7):
    """An object of n distinct random 8-letter keys (the same every run)."""
    rnd = random.Random(seed)
    keys = dict.fromkeys("".join(rnd.choice(string.ascii_lowercase) for _ in range(8)) for _ in range(n))
    return b"{" + b",".join(b'"%s":1' % k.encode() for k in keys) + b"}"


for c in CASES:
    c.sync_timeout = 120   # ours under ASan (scripts/test-all) needs far longer than qemu-ga


@pytest.mark.parametrize("case", params(CASES))
def test_limits(pool, case):
    run_case(pool, case)
