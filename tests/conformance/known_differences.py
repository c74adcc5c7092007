"""Registry of known, intended differences between quiesce-agent and qemu-ga 7.2.

    KNOWN[case id] = Known(reason, compat heading, expect=... and/or check=...)

`compat` must be a heading of docs/compat.md that explains the difference.  A
registered case is still checked, against the registry instead of qemu-ga:
  expect  the segments (lists of reply lines, raw bytes) ours must send, compared with
          the same normalisation as against qemu-ga (member order free, escapes and
          number text exact); a flat list of lines means one segment;
  check   check(ref, ours, ref2=None, tolerances=()) -> list of problems, for cases
          where a predicate is clearer (version strings, command subsets).
So if ours drifts from what is registered, the case fails too.  In self-test mode
(QUIESCE_AGENT is qemu-ga) the registry is ignored.
"""
import re
import subprocess

from replyjson import parse_line, to_py, check_line
from compare import compare_lines
import harness
from harness import Marker

# Lines that recur in expectations.
STRAY_FFFD = b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}'
SYNC = b'\xff{"return": %d}' % harness.SYNC_ID
RESYNC_CLEAN = [STRAY_FFFD, SYNC]          # what the resync sends when the parser was clean
RUNNING = [Marker("<agent running>")]     # last segment of a test_connection scenario

# The commands this milestone implements (docs/compat.md "Commands not implemented yet").
MILESTONE_COMMANDS = [
    "guest-sync-delimited", "guest-sync", "guest-ping", "guest-info", "guest-get-osinfo",
    "guest-get-host-name", "guest-get-time", "guest-get-timezone", "guest-get-users",
    "guest-get-vcpus", "guest-network-get-interfaces", "guest-get-disks", "guest-shutdown",
]

H_CLEAN_PARSER = "New clients start with a clean parser"
H_VERSION = "guest-info reports quiesce-agent's version"
H_NOT_IMPLEMENTED = "Commands not implemented yet"


class Known:
    def __init__(self, reason, compat, expect=None, check=None):
        assert expect is not None or check is not None
        self.reason = reason
        self.compat = compat
        self.expect = expect
        self.check = check


def error(desc, cls=b"GenericError"):
    """An error reply line; desc is the JSON-escaped text."""
    return b'{"error": {"class": "%s", "desc": "%s"}}' % (cls, desc)


def not_found(cmd, id_json=None):
    """The reply ours gives for a command it does not implement."""
    body = b'"error": {"class": "CommandNotFound", "desc": "The command %s has not been found"}' % cmd.encode()
    if id_json is not None:
        return b'{"id": ' + id_json + b", " + body + b"}"
    return b"{" + body + b"}"


def not_implemented(cmd, id_json=None):
    return Known("%s is not implemented in this milestone" % cmd, H_NOT_IMPLEMENTED,
                 expect=[not_found(cmd, id_json)] + RESYNC_CLEAN)


# ---------------------------------------------------------------- predicates

def our_version():
    """The version ours prints with -V ("quiesce-agent X.Y.Z")."""
    out = subprocess.run([harness.OUR_BIN, "-V"], capture_output=True, timeout=10).stdout.decode()
    m = re.fullmatch(r"quiesce-agent (\d+\.\d+\.\d+\S*)\n", out)
    return m.group(1) if m else None


def check_version_output(ref, ours, **_):
    """`-V`: exit 0, nothing on stderr, exactly "quiesce-agent <version>\\n"."""
    probs = []
    if ours.status != ref.status:
        probs.append("exit status: qemu-ga %s, ours %s" % (ref.status, ours.status))
    if not re.fullmatch(rb"quiesce-agent \d+\.\d+\.\d+\S*\n", ours.stdout):
        probs.append("stdout %r is not 'quiesce-agent <version>\\n'" % ours.stdout)
    if ours.stderr:
        probs.append("unexpected stderr %r" % ours.stderr[:300])
    return probs


def check_guest_info(ref, ours, **_):
    """guest-info: version is ours (as -V prints it); supported_commands lists a subset of
    qemu-ga's names, in qemu-ga's order, each with qemu-ga's enabled/success-response,
    and at least this milestone's commands.  Every other line must match qemu-ga."""
    probs = []
    if len(ref.segments) != len(ours.segments):
        return ["segment count: qemu-ga %d, ours %d" % (len(ref.segments), len(ours.segments))]
    for si, (rs, os_) in enumerate(zip(ref.segments, ours.segments)):
        if len(rs) != len(os_):
            probs.append("segment %d: qemu-ga sent %d line(s), ours %d" % (si, len(rs), len(os_)))
            continue
        for li, (rl, ol) in enumerate(zip(rs, os_)):
            info = False
            if isinstance(rl, bytes) and b'"supported_commands"' in rl:
                info = True
            if not info:
                probs += ["segment %d line %d: %s" % (si, li, p) for p in compare_lines(rl, ol)]
                continue
            fr = check_line(ol) if isinstance(ol, bytes) else ["not a reply: %s" % ol]
            if fr:
                probs += ["guest-info reply: " + p for p in fr]
                continue
            probs += ["guest-info: " + p for p in _guest_info_problems(rl, ol)]
    return probs


def _guest_info_problems(rl, ol):
    probs = []
    rd, rv = parse_line(rl)
    od, ov = parse_line(ol)
    r, o = to_py(rv), to_py(ov)
    if rd != od:
        probs.append("0xFF delimiter differs")
    if set(o) != set(r):
        return probs + ["top-level members: qemu-ga %s, ours %s" % (sorted(r), sorted(o))]
    for k in r:
        if k not in ("return",) and r[k] != o[k]:
            probs.append("member %s: qemu-ga %r, ours %r" % (k, r[k], o[k]))
    rr, orr = r.get("return"), o.get("return")
    if not isinstance(orr, dict) or set(orr) != {"version", "supported_commands"}:
        return probs + ["return is %r" % (orr,)]
    ver = our_version()
    if orr["version"] != ver:
        probs.append("version %r, but -V says %r" % (orr["version"], ver))
    rcmds = rr["supported_commands"]
    ocmds = orr["supported_commands"]
    rby = {c["name"]: c for c in rcmds}
    names = [c.get("name") for c in ocmds]
    if len(set(names)) != len(names):
        probs.append("duplicate names in supported_commands")
    unknown = [n for n in names if n not in rby]
    if unknown:
        probs.append("commands qemu-ga does not have: %s" % unknown)
    missing = [n for n in MILESTONE_COMMANDS if n not in names]
    if missing:
        probs.append("milestone commands missing: %s" % missing)
    for c in ocmds:
        if set(c) != {"name", "enabled", "success-response"}:
            probs.append("entry members %s" % sorted(c))
        elif c["name"] in rby and c != rby[c["name"]]:
            probs.append("%s: qemu-ga %s, ours %s" % (c["name"], rby[c["name"]], c))
    expected_order = [c["name"] for c in rcmds if c["name"] in names]
    if not unknown and names != expected_order:
        probs.append("order differs from qemu-ga's: ours %s, qemu-ga (restricted) %s" % (names, expected_order))
    return probs


def check_block_help(ref, ours, **_):
    """`-b help`: ours lists a subset of qemu-ga's commands, in qemu-ga's order, with the
    milestone's commands; exit status and stderr emptiness as qemu-ga."""
    probs = []
    rl = ref.stdout.decode().split("\n")
    ol = ours.stdout.decode().split("\n")
    if not ours.stdout.endswith(b"\n"):
        probs.append("stdout does not end in a newline")
    rl, ol = [x for x in rl if x], [x for x in ol if x]
    unknown = [x for x in ol if x not in rl]
    if unknown:
        probs.append("commands qemu-ga does not have: %s" % unknown)
    elif [x for x in rl if x in ol] != ol:
        probs.append("not in qemu-ga's order: %s" % ol)
    missing = [c for c in MILESTONE_COMMANDS if c not in ol]
    if missing:
        probs.append("milestone commands missing: %s" % missing)
    if ref.status != ours.status:
        probs.append("exit status: qemu-ga %s, ours %s" % (ref.status, ours.status))
    if bool(ref.stderr) != bool(ours.stderr):
        probs.append("stderr: qemu-ga %r, ours %r" % (ref.stderr[:200], ours.stderr[:200]))
    return probs


# ---------------------------------------------------------------- the registry

KNOWN = {
    # A new client does not inherit the previous client's half-sent bytes.
    "conn-new-client-inherits-partial-json": Known(
        "ours resets the parser when a client connects, so `{\"a\":[}` left by the previous "
        "client does not swallow the next client's request", H_CLEAN_PARSER,
        expect=[[b'{"return": {}, "id": "b"}'], RESYNC_CLEAN, RUNNING]),
    # What ours sends is what a freshly started qemu-ga sends for the second client's bytes.
    "conn-request-split-across-clients": Known(
        "ours does not join the previous client's first half of a request to the next "
        "client's second half: `ng\",\"id\":\"b\"}` is parsed on its own", H_CLEAN_PARSER,
        expect=[[error(b"JSON parse error, invalid keyword 'ng'"),
                 error(b"QMP input must be a JSON object"),
                 error(b"JSON parse error, invalid keyword 'id'"),
                 error(b"QMP input must be a JSON object"),
                 error(b"JSON parse error, invalid keyword 'b'")],
                [error(b"JSON parse error, stray '\\\"}\\uFFFD'"), SYNC], RUNNING]),
    "conn-half-close-mid-request": Known(
        "the client that half-closed mid-request leaves nothing behind: the next client's "
        "lone `}` is parsed on its own", H_CLEAN_PARSER,
        expect=[[Marker("<EOF>")], [error(b"JSON parse error, expecting value")] + RESYNC_CLEAN, RUNNING]),

    # guest-info's version, and -V.
    "cmd-guest-info": Known("version is quiesce-agent's; subset of commands", H_VERSION, check=check_guest_info),
    "cmd-guest-info-with-id": Known("version is quiesce-agent's; subset of commands", H_VERSION, check=check_guest_info),
    "cfg-blocked-guest-info": Known("version is quiesce-agent's; subset of commands", H_VERSION, check=check_guest_info),
    "cfg-allowed-guest-info": Known("version is quiesce-agent's; subset of commands", H_VERSION, check=check_guest_info),
    "cfg-allow-and-block-guest-info": Known("version is quiesce-agent's; subset of commands", H_VERSION,
                                            check=check_guest_info),
    "cfg-file-guest-info": Known("version is quiesce-agent's; subset of commands", H_VERSION, check=check_guest_info),
    "cli-version": Known("-V prints quiesce-agent's name and version", H_VERSION, check=check_version_output),
    "cli-version-long": Known("--version prints quiesce-agent's name and version", H_VERSION,
                              check=check_version_output),

    # Commands qemu-ga has and ours does not (yet).
    "cli-block-help": Known("`-b help` lists only the implemented commands", H_NOT_IMPLEMENTED,
                            check=check_block_help),
    "notimpl-guest-exec-status-pid0": not_implemented("guest-exec-status"),
    "notimpl-guest-exec-status-no-args": not_implemented("guest-exec-status"),
    "notimpl-guest-get-devices": not_implemented("guest-get-devices"),
    "notimpl-guest-get-memory-block-info": not_implemented("guest-get-memory-block-info"),
    "notimpl-guest-ssh-get-authorized-keys-bad-arg": not_implemented("guest-ssh-get-authorized-keys"),
    "notimpl-nested-arg-path": not_implemented("guest-ssh-remove-authorized-keys"),
    "notimpl-unknown-beats-arguments-check": not_implemented("guest-exec-status", b"9"),
}
