"""Dispatch (the request object's shape), argument checking, guest-sync(-delimited)."""
import pytest

from cases import C, DRAIN, params, run_case


def sync(arg_json, extra=b""):
    """guest-sync with id given as raw JSON; `extra` is appended inside "arguments"."""
    return b'{"execute":"guest-sync","arguments":{"id":' + arg_json + extra + b"}}"


def dsync(arg_json, extra=b""):
    return b'{"execute":"guest-sync-delimited","arguments":{"id":' + arg_json + extra + b"}}"


CASES = [
    # --- request shape
    C("unknown-command", [b'{"execute":"nope"}']),
    C("unknown-command-with-id", [b'{"execute":"nope","id":1}']),
    C("unknown-command-with-args", [b'{"execute":"nope","arguments":{"x":1},"id":7}']),
    C("unknown-command-case", [b'{"execute":"GUEST-PING"}']),
    C("unknown-command-underscore", [b'{"execute":"guest_ping"}']),
    C("unknown-command-trailing-space", [b'{"execute":"guest-ping "}']),
    C("unknown-command-empty", [b'{"execute":""}']),
    C("unknown-command-nul-escape", [b'{"execute":"guest-ping\\u0000"}']),
    C("unknown-command-non-ascii", [b'{"execute":"\\u00e9\xe2\x82\xac"}']),
    C("unknown-command-quote", [b'{"execute":"a\\"b\\\\c"}']),
    C("execute-int", [b'{"execute":1,"id":1}']),
    C("execute-null", [b'{"execute":null}']),
    C("execute-array", [b'{"execute":["guest-ping"]}']),
    C("execute-object", [b'{"execute":{"x":"guest-ping"}}']),
    C("execute-bool", [b'{"execute":true,"id":"t"}']),
    C("arguments-array", [b'{"execute":"guest-ping","arguments":[]}']),
    C("arguments-null", [b'{"execute":"guest-ping","arguments":null}']),
    C("arguments-string-with-id", [b'{"execute":"guest-ping","arguments":"x","id":2}']),
    C("arguments-empty-object", [b'{"execute":"guest-ping","arguments":{}}']),
    C("missing-execute", [b'{"arguments":{},"id":3}']),
    C("missing-execute-only-id", [b'{"id":3}']),
    C("unexpected-member", [b'{"execute":"guest-ping","foo":1,"id":4}']),
    C("unexpected-exec-oob", [b'{"exec-oob":"guest-ping","id":5}']),
    C("unexpected-exec-oob-with-execute", [b'{"execute":"guest-ping","exec-oob":"guest-ping"}']),
    C("unexpected-control", [b'{"execute":"guest-ping","control":{}}']),
    C("unexpected-member-case", [b'{"Execute":"guest-ping"}']),
    # which error wins when several are wrong (qemu-ga walks the members in QDict hash order)
    C("several-wrong-exec-args-foo", [b'{"execute":1,"arguments":1,"foo":1,"id":6}']),
    C("several-wrong-nope-args-foo", [b'{"execute":"nope","arguments":1,"foo":1,"id":6}']),
    C("several-wrong-nope-args", [b'{"execute":"nope","arguments":1,"id":6}']),
    C("several-wrong-exec-args", [b'{"execute":1,"arguments":1,"id":6}']),
    C("several-wrong-args-exec-order", [b'{"arguments":1,"execute":1}']),
    C("several-wrong-args-foo-no-exec", [b'{"arguments":1,"foo":1,"id":6}']),
    C("several-wrong-args-no-exec", [b'{"arguments":1,"id":6}']),
    C("several-wrong-exec-foo", [b'{"execute":1,"foo":1}']),
    C("several-wrong-foo-exec", [b'{"foo":1,"execute":1}']),
    C("several-unexpected-foo-bar", [b'{"foo":1,"bar":2}']),
    C("several-unexpected-bar-foo", [b'{"bar":2,"foo":1}']),
    C("several-unexpected-foo-zzz", [b'{"execute":"guest-ping","arguments":{},"id":1,"foo":1,"zzz":2}']),
    C("several-unexpected-four", [b'{"execute":"guest-ping","foo":1,"zzz":2,"aaa":3,"control":4}']),
    C("several-unexpected-many", [b'{"execute":"guest-ping","a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1}']),
    C("unexpected-beats-unknown-command", [b'{"execute":"nope","foo":1}']),
    C("arguments-check-beats-unknown", [b'{"execute":"nope","arguments":[],"id":8}']),
    # --- arguments
    C("args-unexpected", [b'{"execute":"guest-ping","arguments":{"foo":42}}']),
    C("args-unexpected-two", [b'{"execute":"guest-ping","arguments":{"foo":42,"bar":1}}']),
    C("args-unexpected-four", [b'{"execute":"guest-ping","arguments":{"a":1,"b":2,"c":3,"d":4}}']),
    C("args-unexpected-with-id", [b'{"execute":"guest-ping","arguments":{"foo":42},"id":[1]}']),
    C("args-unexpected-name-escaped", [b'{"execute":"guest-ping","arguments":{"f\\u00f6\\"o":1}}']),
    C("args-unexpected-info", [b'{"execute":"guest-info","arguments":{"x":null}}']),
    C("args-unexpected-get-time", [b'{"execute":"guest-get-time","arguments":{"x":1}}']),
    C("args-unexpected-osinfo", [b'{"execute":"guest-get-osinfo","arguments":{"x":1}}']),
    C("args-unexpected-host-name", [b'{"execute":"guest-get-host-name","arguments":{"x":1}}']),
    C("args-unexpected-timezone", [b'{"execute":"guest-get-timezone","arguments":{"x":1}}']),
    C("args-unexpected-users", [b'{"execute":"guest-get-users","arguments":{"x":1}}']),
    C("args-unexpected-vcpus", [b'{"execute":"guest-get-vcpus","arguments":{"x":1}}']),
    C("args-unexpected-interfaces", [b'{"execute":"guest-network-get-interfaces","arguments":{"x":1}}']),
    C("args-unexpected-disks", [b'{"execute":"guest-get-disks","arguments":{"x":1}}']),
    C("sync-missing-arguments", [b'{"execute":"guest-sync"}']),
    C("sync-missing-id", [b'{"execute":"guest-sync","arguments":{}}']),
    C("sync-missing-id-other-args", [b'{"execute":"guest-sync","arguments":{"foo":2,"bar":3}}']),
    C("sync-id-string", [sync(b'"1"')]),
    C("sync-id-float", [sync(b"1.5")]),
    C("sync-id-float-integral", [sync(b"1.0")]),
    C("sync-id-exp", [sync(b"1e3")]),
    C("sync-id-bool", [sync(b"true")]),
    C("sync-id-null", [sync(b"null")]),
    C("sync-id-object", [sync(b"{}")]),
    C("sync-id-array", [sync(b"[]")]),
    C("sync-id-int64-max", [sync(b"9223372036854775807")]),
    C("sync-id-int64-min", [sync(b"-9223372036854775808")]),
    C("sync-id-int64-max-plus-1", [sync(b"9223372036854775808")]),
    C("sync-id-uint64-max", [sync(b"18446744073709551615")]),
    C("sync-id-huge", [sync(b"123456789012345678901234567890")]),
    C("sync-id-inf", [sync(b"1e400")]),
    C("sync-id-negative", [sync(b"-1")]),
    C("sync-id-zero", [sync(b"0")]),
    C("sync-id-negative-zero", [sync(b"-0")]),
    C("sync-extra-arg", [sync(b"1", b',"x":2')]),
    C("sync-extra-args-two", [sync(b"1", b',"foo":2,"bar":3')]),
    C("sync-wrong-type-and-extra", [sync(b'"x"', b',"foo":2')]),
    C("sync-duplicate-arg", [sync(b"1", b',"id":2')]),
    C("sync-extra-toplevel", [b'{"execute":"guest-sync","arguments":{"id":1},"foo":2,"bar":3}']),
    C("sync-with-request-id", [b'{"execute":"guest-sync","arguments":{"id":1},"id":"q"}']),
    C("shutdown-invalid-mode", [b'{"execute":"guest-shutdown","arguments":{"mode":"foo"}}']),
    C("shutdown-invalid-mode-with-id", [b'{"execute":"guest-shutdown","arguments":{"mode":"foo"},"id":1}']),
    C("shutdown-mode-empty", [b'{"execute":"guest-shutdown","arguments":{"mode":""}}']),
    C("shutdown-mode-case", [b'{"execute":"guest-shutdown","arguments":{"mode":"HALT-no"}}']),
    C("shutdown-mode-int", [b'{"execute":"guest-shutdown","arguments":{"mode":1}}']),
    C("shutdown-mode-null", [b'{"execute":"guest-shutdown","arguments":{"mode":null}}']),
    C("shutdown-mode-array", [b'{"execute":"guest-shutdown","arguments":{"mode":["halt"]}}']),
    C("shutdown-invalid-mode-and-extra", [b'{"execute":"guest-shutdown","arguments":{"mode":"foo","x":1}}']),
    C("shutdown-wrong-type-and-extra", [b'{"execute":"guest-shutdown","arguments":{"mode":2,"x":1}}']),
    C("shutdown-arguments-not-object", [b'{"execute":"guest-shutdown","arguments":"halt"}']),
    # --- guest-sync-delimited
    C("dsync-echo", [dsync(b"42")]),
    C("dsync-with-request-id", [b'{"execute":"guest-sync-delimited","arguments":{"id":1},"id":"q"}']),
    C("dsync-negative", [dsync(b"-5")]),
    C("dsync-bad-type-no-ff", [b'{"execute":"guest-sync-delimited","arguments":{"id":"1"},"id":"q"}']),
    C("dsync-missing-id-no-ff", [b'{"execute":"guest-sync-delimited","arguments":{}}']),
    C("dsync-extra-arg-no-ff", [dsync(b"1", b',"x":1')]),
    C("dsync-then-ping-one-ff", [dsync(b"1") + b'{"execute":"guest-ping"}']),
    C("dsync-twice", [dsync(b"1") + dsync(b"2")]),
    C("dsync-failed-then-ping", [dsync(b'"x"') + b'{"execute":"guest-ping"}']),
    C("dsync-separate-writes", [dsync(b"1"), DRAIN, b'{"execute":"guest-ping"}']),
    C("sync-no-ff", [sync(b"3")]),
    C("ff-dsync-after-garbage", [b'{"execute":"gue', b"\xff" + dsync(b"99")]),
    C("ff-dsync-after-garbage-nested", [b'{"a":[[{"b":"x', b"\xff" + dsync(b"98")]),
    C("ff-dsync-after-bad-utf8", [b'{"a":"\xc3', b"\xff" + dsync(b"97")]),
    C("ff-dsync-after-limit-style-garbage", [b"]]]}}}" + b"\xff" + dsync(b"96")]),
    C("ff-sync-plain-after-garbage", [b'{"x":', b"\xff" + sync(b"95")]),
]


@pytest.mark.parametrize("case", params(CASES))
def test_dispatch(pool, case):
    run_case(pool, case)
