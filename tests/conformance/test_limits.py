"""qemu-ga's parser limits: nesting depth 1024, 2M tokens, 64 MiB of token text.

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
"""
import pytest

from cases import C, params, run_case

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
]


for c in CASES:
    c.sync_timeout = 120   # ours under ASan (scripts/test-all) needs far longer than qemu-ga


@pytest.mark.parametrize("case", params(CASES))
def test_limits(pool, case):
    run_case(pool, case)
