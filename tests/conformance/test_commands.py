"""Read-only commands.  Both agents run on the same machine, so machine facts (host
name, OS, vCPUs, time zone, interfaces and addresses, disks) must be equal; only
clocks and counters get a tolerance (qemu-ga is asked before and after ours).

Never here: guest-shutdown without an invalid mode, guest-fsfreeze-freeze*,
guest-fstrim, guest-set-*, guest-suspend-*, guest-exec, guest-file-*.
"""
import pytest

from cases import C, DRAIN, cmd, params, run_case, run_fresh
from compare import Between, Near
from harness import AgentSpec


SECOND = 10**9
TIME_TOL = [Between("return", slack=SECOND)]
NET_TOL = [Between("return.*.statistics.*")]
USERS_TOL = [Near("return.*.login-time", 1e-3)]
# other tests write to this machine's disks meanwhile
FS_TOL = [Near("return.*.used-bytes", 1 << 30)]

CASES = [
    C("cmd-guest-ping", [cmd("guest-ping")]),
    C("cmd-guest-ping-with-id", [cmd("guest-ping", id=b'"p"')]),
    C("cmd-guest-ping-empty-args", [cmd("guest-ping", b"{}")]),
    C("cmd-guest-sync", [cmd("guest-sync", b'{"id":77}')]),
    C("cmd-guest-info", [cmd("guest-info")]),
    C("cmd-guest-info-with-id", [cmd("guest-info", id=b"[1]")]),
    C("cmd-guest-get-osinfo", [cmd("guest-get-osinfo")]),
    C("cmd-guest-get-host-name", [cmd("guest-get-host-name")]),
    C("cmd-guest-get-time", [cmd("guest-get-time")], sandwich=True, tolerances=TIME_TOL),
    C("cmd-guest-get-time-with-id", [cmd("guest-get-time", id=b'"t"')], sandwich=True, tolerances=TIME_TOL),
    C("cmd-guest-get-timezone", [cmd("guest-get-timezone")]),
    C("cmd-guest-get-users", [cmd("guest-get-users")], tolerances=USERS_TOL),
    C("cmd-guest-get-vcpus", [cmd("guest-get-vcpus")]),
    C("cmd-guest-network-get-interfaces", [cmd("guest-network-get-interfaces")], sandwich=True,
      tolerances=NET_TOL),
    C("cmd-guest-get-disks", [cmd("guest-get-disks")]),
    # read-only commands beyond the first milestone
    C("cmd-guest-fsfreeze-status", [cmd("guest-fsfreeze-status", id=b'"fs"')]),
    C("cmd-guest-get-fsinfo", [cmd("guest-get-fsinfo")], tolerances=FS_TOL),
    C("cmd-guest-get-fsinfo-bad-arg", [cmd("guest-get-fsinfo", b'{"x":1}')]),
    C("cmd-several-in-one-write",
      [cmd("guest-get-host-name") + cmd("guest-get-timezone", id=b"2") + cmd("guest-get-vcpus") +
       cmd("guest-get-osinfo", id=b'"o"') + cmd("guest-get-disks") + cmd("guest-ping")]),
    C("cmd-same-connection-repeated", [cmd("guest-ping", id=b"1"), DRAIN, cmd("guest-get-host-name"), DRAIN,
                                       cmd("guest-ping", id=b"3")]),
    # qemu-ga has these, ours does not implement them yet (registered differences)
    C("notimpl-guest-exec-status-pid0", [cmd("guest-exec-status", b'{"pid":0}')]),
    C("notimpl-guest-exec-status-no-args", [cmd("guest-exec-status")]),
    C("notimpl-guest-get-devices", [cmd("guest-get-devices")]),
    C("notimpl-guest-get-memory-block-info", [cmd("guest-get-memory-block-info")]),
    C("notimpl-guest-ssh-get-authorized-keys-bad-arg", [cmd("guest-ssh-get-authorized-keys", b'{"username":1}')]),
    # nested argument paths ('keys[0]'): only mutating commands take structured arguments,
    # so this one is sent with a wrong type that argument checking rejects before the
    # command could run, for a user that does not exist.
    C("notimpl-nested-arg-path", [cmd("guest-ssh-remove-authorized-keys", b'{"username":"no-such-user-qc","keys":[1]}')]),
    C("notimpl-unknown-beats-arguments-check", [cmd("guest-exec-status", b'{"pid":"x"}', id=b"9")]),
]


@pytest.mark.parametrize("case", params(CASES))
def test_command(pool, case):
    run_case(pool, case)


# ---------------------------------------------------------------- guest-get-osinfo with QGA_OS_RELEASE
#
# qemu-ga 7.2 reads the file as a GLib key file (a "[os-release]" group line is put in
# front), so key-file syntax errors or invalid UTF-8 drop every os-release field; then
# each value goes through its own unquoting: a leading " is dropped and the value ends at
# the next unescaped "; otherwise the value ends at the first space; \$ \" \' \\ \` are
# unescaped, other backslashes kept; single quotes are not quotes.  It shifts the text
# left in place without re-terminating it, so `ID="abc` reads as "abcc" (sic).

OS_RELEASE = [
    ("osrel-quoting", b'ID=plain\nNAME="Double Quoted"\nPRETTY_NAME=\'Single Quoted\'\n'
     b'VERSION="with \\"escaped\\" quotes and \\$dollar and \\`tick\\` and \\\\backslash"\n'
     b'VERSION_ID=unquoted\\ escaped\\ space\nVARIANT="a"\'b\'c\nVARIANT_ID=\n'),
    ("osrel-unterminated-and-unicode", b'ID="unterminated\nNAME=\'x\'\nVERSION="tab\tin"\n'
     b'PRETTY_NAME="caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"\n'),
    ("osrel-backslashes", b'ID=a\\sb\nNAME="x\\ty"\nVERSION="p\\nq"\nVERSION_ID="r\\\\s"\nVARIANT=\\$x\n'
     b'VARIANT_ID="\\z"\n'),
    ("osrel-quote-edges", b'ID=""\nNAME="\'"\nVERSION=\'\'\nPRETTY_NAME="a"b"c"\nVERSION_ID="trailing\\\\"\n'
     b'VARIANT="end\\"\n'),
    ("osrel-keyfile-syntax", b'# comment\n  ID = spaced  \nNAME=first\nNAME=second\n\n[group]\nVERSION=1\n'),
    ("osrel-keyfile-error-line", b'ID=x\nNAME\n'),
    ("osrel-continuation-line", b'ID=x\nVARIANT="line1\\\nline2"\n'),
    ("osrel-invalid-utf8", b'ID=bad\xffutf\nNAME=ok\n'),
    ("osrel-crlf", b'ID=x\r\nNAME="crlf"\r\n'),
    ("osrel-misc", b'ID=x\nNAME=a=b\nLOGO=y\nVERSION="  lead"\nVERSION_CODENAME=c\n'),
    ("osrel-group-header", b'[os-release]\nID=dup\n'),
    ("osrel-control-chars", b'ID=x\nNAME=\x01ctl\nVERSION="x\x7f"\n'),
    ("osrel-empty-file", b''),
    ("osrel-no-trailing-newline", b'ID=last'),
    ("osrel-all-fields", b'ID=qemu-ga-test\nNAME=QEMU-GA\nPRETTY_NAME="QEMU Guest Agent test"\nVERSION="Test 1"\n'
     b'VERSION_ID=1\nVARIANT="Unit test \\"\\\'\\$\\`\\\\ and \\\\\\\\ etc."\nVARIANT_ID=unit-test\n'),
]

OSREL_CASES = [
    C(name, [cmd("guest-get-osinfo")],
      agent=AgentSpec(name, env={"QGA_OS_RELEASE": "{dir}/os-release"}, files={"os-release": data}))
    for name, data in OS_RELEASE
] + [
    C("osrel-missing-file", [cmd("guest-get-osinfo")],
      agent=AgentSpec("osrel-missing-file", env={"QGA_OS_RELEASE": "{dir}/no-such-file"})),
    C("osrel-directory", [cmd("guest-get-osinfo")],
      agent=AgentSpec("osrel-directory", env={"QGA_OS_RELEASE": "{dir}"})),
]


@pytest.mark.parametrize("case", params(OSREL_CASES))
def test_osinfo_file(case):
    run_fresh(case)
