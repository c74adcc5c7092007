"""Registry of known, intended differences between quiesce-agent and qemu-ga 7.2.

    KNOWN[case id] = Known(reason, compat heading,
                           expect=... and/or check=...,            # what ours does
                           ref_expect=... and/or ref_check=...)    # what qemu-ga does

`compat` must be a heading of docs/compat.md that explains the difference.  A
registered case is still checked, against the registry instead of one agent against
the other, on both sides:
  expect      the segments (lists of reply lines, raw bytes) ours must send, compared
              with the same normalisation as against qemu-ga (member order free,
              escapes and number text exact); a flat list of lines means one segment;
  check       check(ref, ours, ref2=None, tolerances=()) -> list of problems, for cases
              where a predicate is clearer (version strings, command subsets);
  ref_expect  the segments qemu-ga must send: what docs/compat.md says it does;
  ref_check   ref_check(ref, ref2=None, tolerances=()) -> list of problems, the same
              as a predicate (for what varies by machine: versions, disks).
So if ours drifts from what is registered, the case fails, and if qemu-ga stops doing
what the registry records for it (the difference is gone, or was never what compat.md
says), it fails too: an entry cannot outlive the difference it documents.  In
self-test mode (QUIESCE_AGENT is qemu-ga) both agents must match exactly, and the
reference side of each entry is still checked.
"""
import os
import re
import subprocess

from replyjson import parse_line, to_py, check_line
from compare import compare_lines, compare_expected
import harness
from harness import Marker

# Lines that recur in expectations.
STRAY_FFFD = b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}'
SYNC = b'\xff{"return": %d}' % harness.SYNC_ID
RESYNC_CLEAN = [STRAY_FFFD, SYNC]          # what the resync sends when the parser was clean
RUNNING = [Marker("<agent running>")]     # last segment of a test_connection scenario

# The commands implemented so far (docs/compat.md "Commands not implemented yet").
MILESTONE_COMMANDS = [
    "guest-sync-delimited", "guest-sync", "guest-ping", "guest-info", "guest-get-osinfo",
    "guest-get-host-name", "guest-get-time", "guest-get-timezone", "guest-get-users",
    "guest-get-vcpus", "guest-network-get-interfaces", "guest-get-disks", "guest-shutdown",
    "guest-fsfreeze-status", "guest-fsfreeze-freeze", "guest-fsfreeze-freeze-list",
    "guest-fsfreeze-thaw", "guest-get-fsinfo", "guest-fstrim",
]
# Our own commands (docs/compat.md "quiesce-freeze-report"): not in qemu-ga; listed after
# qemu-ga's by -b help, so first by guest-info (which lists in reverse).
EXTENSIONS = {"quiesce-freeze-report": {"success-response": True}}  # enabled follows -a/-b

H_CLEAN_PARSER = "New clients start with a clean parser"
H_VERSION = "guest-info reports quiesce-agent's version"
H_NOT_IMPLEMENTED = "Commands not implemented yet"
H_EXTENSION = "quiesce-freeze-report"
H_SERIAL = "Disk serial without udev"
H_PIDFILE = "Default pidfile"
H_DEFAULT_HOOK = "The default hook runs when it exists"
H_OSRELEASE = "os-release values"
H_STATEDIR = "A relative statedir is an error"
H_UNKNOWN_KEY = "Unknown configuration keys are reported"
H_BACKLOG = "Listen backlog"
H_CLIENT_GONE = "A client that goes away does not stop the agent"
H_LOG_DEFAULT = "Start, stop and freeze events are logged by default"
H_THAW_HOOK = "The thaw hook always follows a freeze hook, exactly once"
H_NOT_A_MOUNT = "guest-fsfreeze-freeze-list rejects what is not a mount point"
H_QUOTE_CAP = "Error texts quote at most 256 bytes of input"
H_COLLIDING = "Which of many colliding arguments is named"
H_EMPTY_LIST = "An empty freeze list freezes nothing and runs no hook"


class Known:
    def __init__(self, reason, compat, expect=None, check=None, ref_expect=None, ref_check=None):
        assert expect is not None or check is not None, "say what ours sends"
        self.reason = reason
        self.compat = compat
        self.expect = expect
        self.check = check
        self.ref_expect = ref_expect
        self.ref_check = ref_check


def reference_problems(known, ref, ref2=None, tolerances=()):
    """Where qemu-ga (ref) no longer does what the registry records for it."""
    probs = []
    if known.ref_expect is not None:
        # compare_expected() words it as "qemu-ga sent <expected>, ours <actual>"
        swap = {"qemu-ga": "the registry", "ours": "qemu-ga"}
        probs += [re.sub(r"\b(qemu-ga|ours)\b", lambda m: swap[m.group(1)], p)
                  for p in compare_expected(known.ref_expect, ref, tolerances)]
    if known.ref_check is not None:
        probs += known.ref_check(ref, ref2=ref2, tolerances=tolerances)
    return ["registered difference (%s): qemu-ga no longer does what the registry records: %s"
            % (known.compat, p) for p in probs]


def problems(known, ref, ours, ref2=None, tolerances=()):
    """Everything wrong with a registered case: ours not sending what is registered for
    it, and qemu-ga not sending what is recorded for it."""
    probs = []
    if known.expect is not None:
        probs += ["registered difference (%s) drifted: %s" % (known.compat, p)
                  for p in compare_expected(known.expect, ours, tolerances)]
    if known.check is not None:
        probs += ["registered difference (%s): %s" % (known.compat, p)
                  for p in known.check(ref, ours, ref2=ref2, tolerances=tolerances)]
    return probs + reference_problems(known, ref, ref2, tolerances)


def error(desc, cls=b"GenericError"):
    """An error reply line; desc is the JSON-escaped text."""
    return b'{"error": {"class": "%s", "desc": "%s"}}' % (cls, desc)


def not_found(cmd, id_json=None):
    """The reply ours gives for a command it does not implement."""
    body = b'"error": {"class": "CommandNotFound", "desc": "The command %s has not been found"}' % cmd.encode()
    if id_json is not None:
        return b'{"id": ' + id_json + b", " + body + b"}"
    return b"{" + body + b"}"


def not_implemented(cmd, ref_line=None, id_json=None, ref_check=None):
    """ours: CommandNotFound; qemu-ga: ref_line (what its implementation answers), or
    ref_check."""
    return Known("%s is not implemented in this milestone" % cmd, H_NOT_IMPLEMENTED,
                 expect=[not_found(cmd, id_json)] + RESYNC_CLEAN,
                 ref_expect=None if ref_line is None else [ref_line] + RESYNC_CLEAN, ref_check=ref_check)


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


def each_line(ref, ours, fn):
    """Problems from fn(rl, ol) -> list for each pair of reply lines, once the segment
    and line counts agree (each problem prefixed with its position)."""
    if len(ref.segments) != len(ours.segments):
        return ["segment count: qemu-ga %d, ours %d" % (len(ref.segments), len(ours.segments))]
    probs = []
    for si, (rs, os_) in enumerate(zip(ref.segments, ours.segments)):
        if len(rs) != len(os_):
            probs.append("segment %d: qemu-ga sent %d line(s), ours %d" % (si, len(rs), len(os_)))
            continue
        for li, (rl, ol) in enumerate(zip(rs, os_)):
            probs += ["segment %d line %d: %s" % (si, li, p) for p in fn(rl, ol)]
    return probs


def check_guest_info(ref, ours, **_):
    """guest-info: version is ours (as -V prints it); supported_commands lists a subset of
    qemu-ga's names, in qemu-ga's order, each with qemu-ga's enabled/success-response,
    and at least this milestone's commands.  Every other line must match qemu-ga."""
    def line(rl, ol):
        if not (isinstance(rl, bytes) and b'"supported_commands"' in rl):
            return compare_lines(rl, ol)
        fr = check_line(ol) if isinstance(ol, bytes) else ["not a reply: %s" % ol]
        if fr:
            return ["guest-info reply: " + p for p in fr]
        return ["guest-info: " + p for p in _guest_info_problems(rl, ol)]
    return each_line(ref, ours, line)


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
    ext = [c for c in ocmds if c.get("name") in EXTENSIONS]
    for c in ext:
        if not isinstance(c.get("enabled"), bool) or \
                {k: v for k, v in c.items() if k not in ("name", "enabled")} != EXTENSIONS[c["name"]]:
            probs.append("extension %s listed as %s" % (c["name"], c))
    if ocmds[:len(ext)] != ext:
        probs.append("extensions are not listed first (qemu-ga order reversed): %s" % ocmds)
    ocmds = [c for c in ocmds if c.get("name") not in EXTENSIONS]
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
    ext = [x for x in ol if x in EXTENSIONS]
    if ol[len(ol) - len(ext):] != ext:
        probs.append("our extension commands are not listed last: %s" % ol)
    ol = [x for x in ol if x not in EXTENSIONS]
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


def _keyfile(text):
    """[general] key=value pairs of a -D dump."""
    out, group = {}, None
    for line in text.decode(errors="replace").splitlines():
        if line.startswith("["):
            group = line.strip("[]")
        elif "=" in line and group == "general":
            k, v = line.split("=", 1)
            out[k] = v
    return out


def check_dump(ref, ours, **_):
    """-D: the same key file but for our default pidfile and, when /etc/qemu/fsfreeze-hook
    exists and no hook was configured, the default hook; stderr may only add our warning
    about unknown config keys."""
    probs = []
    r, o = _keyfile(ref.stdout), _keyfile(ours.stdout)
    if ref.status != ours.status:
        probs.append("exit status: qemu-ga %s, ours %s" % (ref.status, ours.status))
    if r.get("pidfile") == "/var/run/qemu-ga.pid":
        if o.get("pidfile") != "/var/run/quiesce-agent.pid":
            probs.append("pidfile %r, expected our default" % o.get("pidfile"))
        r.pop("pidfile"), o.pop("pidfile", None)
    if "fsfreeze-hook" not in r and o.get("fsfreeze-hook") == "/etc/qemu/fsfreeze-hook" \
            and os.path.exists("/etc/qemu/fsfreeze-hook"):
        o.pop("fsfreeze-hook")
    if r != o:
        probs.append("key file: qemu-ga %s, ours %s" % (r, o))
    extra = [l for l in ours.stderr.decode(errors="replace").splitlines()
             if not re.search(r"warning: config line \d+: unknown key '[^']*', ignoring$", l)]
    if bool(ref.stderr) != bool(extra):
        probs.append("stderr: qemu-ga %r, ours %r" % (ref.stderr[:200], ours.stderr[:200]))
    return probs


SERIAL = re.compile(rb'"serial": "([^"]*)", ')


def check_serial(ref, ours, tolerances=(), **_):
    """Replies equal once the "serial" members ours adds (no udev database here) are taken
    out, and each such serial is what sysfs says for that device (with the case's
    tolerances, e.g. for used-bytes)."""
    def line(rl, ol):
        probs = []
        if isinstance(ol, bytes):
            for m in re.finditer(rb'"serial": "([^"]*)", "bus-type": "[^"]*", "bus": \d+, '
                                 rb'"unit": \d+, "pci-controller": \{[^}]*\}, "dev": "/dev/([^"]+)"', ol):
                want = _sysfs_serial(m.group(2).decode())
                if want != m.group(1).decode():
                    probs.append("serial %r of %s, sysfs says %r" % (m.group(1), m.group(2), want))
            ol = SERIAL.sub(b"", ol)
        return probs + compare_lines(rl, ol, tolerances)
    return each_line(ref, ours, line)


def _sysfs_serial(dev):
    for path in ("/sys/class/block/%s/serial" % dev, "/sys/class/block/%s/device/serial" % dev):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            pass
    return None


def check_osinfo(overrides):
    """Replies equal but for the members in overrides (name -> the value ours sends)."""
    def line(rl, ol):
        if not (isinstance(ol, bytes) and b'"kernel-release"' in ol):
            return compare_lines(rl, ol)
        probs = []
        r, o = to_py(parse_line(rl)[1]), to_py(parse_line(ol)[1])
        for k, v in overrides.items():
            if o["return"].get(k) != v:
                probs.append("%s: ours %r, registered %r" % (k, o["return"].get(k), v))
            r["return"].pop(k, None)
            o["return"].pop(k, None)
        if r != o:
            probs.append("other members: qemu-ga %s, ours %s" % (r, o))
        return probs
    return lambda ref, ours, **_: each_line(ref, ours, line)


def check_relative_statedir(ref, ours, **_):
    probs = []
    if ours.status != 1:
        probs.append("exit status %s, expected 1" % ours.status)
    if b"must be an absolute path" not in ours.stderr:
        probs.append("stderr %r does not say why" % ours.stderr[:300])
    return probs


def check_log_written(ref, ours, **_):
    """test_logfile facts (exists, non-empty): ours writes its start and stop lines."""
    return [] if ours == (True, True) else ["log file facts %s, expected (True, True)" % (ours,)]


# ---------------------------------------------------------------- what qemu-ga does (ref_check)

def ref_version():
    """The version qemu-ga prints with -V ("QEMU Guest Agent X.Y.Z")."""
    out = subprocess.run([harness.REF_BIN, "-V"], capture_output=True, timeout=10).stdout.decode()
    m = re.fullmatch(r"QEMU Guest Agent (\d+\.\d+\.\d+)\n", out)
    return m.group(1) if m else None


def ref_guest_info(ref, **_):
    """qemu-ga's guest-info carries its QEMU version (what -V says) and lists commands
    ours does not implement."""
    lines = [l for l in ref.flat() if isinstance(l, bytes) and b'"supported_commands"' in l]
    if len(lines) != 1:
        return ["expected one guest-info reply, got %d" % len(lines)]
    r = to_py(parse_line(lines[0])[1])["return"]
    probs = []
    if r.get("version") != ref_version():
        probs.append("version %r, but qemu-ga -V says %r" % (r.get("version"), ref_version()))
    names = {c.get("name") for c in r.get("supported_commands", [])}
    if not {"guest-exec", "guest-file-open", "guest-set-time"} <= names:
        probs.append("guest-exec, guest-file-open, guest-set-time not all listed: %s" % sorted(names))
    return probs


def ref_cli_version(ref, **_):
    if ref.status != 0 or not re.fullmatch(rb"QEMU Guest Agent \d+\.\d+\.\d+\n", ref.stdout):
        return ["exit %s, stdout %r: not 'QEMU Guest Agent <version>'" % (ref.status, ref.stdout[:200])]
    return []


def ref_block_help(ref, **_):
    listed = set(ref.stdout.decode().split())
    missing = {"guest-exec", "guest-file-open", "guest-set-time", "guest-get-devices"} - listed
    return ["does not list %s" % sorted(missing)] if missing else []


def ref_dump(pidfile_default, hook_default):
    """-D of qemu-ga: its own default pidfile where none is configured, and no
    fsfreeze-hook key where none is configured (it does not use the default hook)."""
    def check(ref, **_):
        k = _keyfile(ref.stdout)
        probs = []
        if pidfile_default and k.get("pidfile") != "/var/run/qemu-ga.pid":
            probs.append("pidfile %r, not /var/run/qemu-ga.pid" % k.get("pidfile"))
        if hook_default and "fsfreeze-hook" in k:
            probs.append("fsfreeze-hook=%s although none is configured" % k["fsfreeze-hook"])
        return probs
    return check


def ref_no_serial(ref, **_):
    """Without a udev database qemu-ga reports no disk serial."""
    if os.path.isdir("/run/udev/data"):
        return []   # with udev both agents report it: no difference to check here
    return ["qemu-ga reported a serial: %s" % l[:200] for l in ref.flat()
            if isinstance(l, bytes) and b'"serial"' in l]


def ref_osinfo(values):
    """qemu-ga's guest-get-osinfo has these members (name -> value)."""
    def check(ref, **_):
        lines = [l for l in ref.flat() if isinstance(l, bytes) and b'"kernel-release"' in l]
        if len(lines) != 1:
            return ["expected one guest-get-osinfo reply, got %d" % len(lines)]
        r = to_py(parse_line(lines[0])[1])["return"]
        return ["%s: qemu-ga %r, registry %r" % (k, r.get(k), v) for k, v in values.items() if r.get(k) != v]
    return check


def ref_relative_statedir(ref, **_):
    """qemu-ga -t relative: four critical errors, exit 0, nothing served."""
    n = ref.stderr.count(b"critical: ")
    return [] if ref.status == 0 and n == 4 else ["exit %s with %d critical errors" % (ref.status, n)]


def ref_quote_all(prefix, n, fill, suffix):
    """An error line quoting all n bytes of the input (each as `fill`), built when
    checked (it is big)."""
    return lambda ref, **_: compare_expected([error(prefix + fill * n + suffix)] + RESYNC_CLEAN, ref)


# ---------------------------------------------------------------- the registry

KNOWN = {
    # A new client does not inherit the previous client's half-sent bytes.
    "conn-new-client-inherits-partial-json": Known(
        "ours resets the parser when a client connects, so `{\"a\":[}` left by the previous "
        "client does not swallow the next client's request", H_CLEAN_PARSER,
        expect=[[b'{"return": {}, "id": "b"}'], RESYNC_CLEAN, RUNNING],
        ref_expect=[[], RESYNC_CLEAN, RUNNING]),
    # What ours sends is what a freshly started qemu-ga sends for the second client's bytes.
    "conn-request-split-across-clients": Known(
        "ours does not join the previous client's first half of a request to the next "
        "client's second half: `ng\",\"id\":\"b\"}` is parsed on its own", H_CLEAN_PARSER,
        expect=[[error(b"JSON parse error, invalid keyword 'ng'"),
                 error(b"QMP input must be a JSON object"),
                 error(b"JSON parse error, invalid keyword 'id'"),
                 error(b"QMP input must be a JSON object"),
                 error(b"JSON parse error, invalid keyword 'b'")],
                [error(b"JSON parse error, stray '\\\"}\\uFFFD'"), SYNC], RUNNING],
        ref_expect=[[b'{"return": {}, "id": "b"}'], RESYNC_CLEAN, RUNNING]),
    "conn-half-close-mid-request": Known(
        "the client that half-closed mid-request leaves nothing behind: the next client's "
        "lone `}` is parsed on its own", H_CLEAN_PARSER,
        expect=[[Marker("<EOF>")], [error(b"JSON parse error, expecting value")] + RESYNC_CLEAN, RUNNING],
        ref_expect=[[Marker("<EOF>")], [b'{"return": {}}'] + RESYNC_CLEAN, RUNNING]),

    # guest-info's version, and -V.
    "cmd-guest-info": Known("version is quiesce-agent's; subset of commands", H_VERSION, check=check_guest_info, ref_check=ref_guest_info),
    "cmd-guest-info-with-id": Known("version is quiesce-agent's; subset of commands", H_VERSION, check=check_guest_info, ref_check=ref_guest_info),
    "cfg-blocked-guest-info": Known("version is quiesce-agent's; subset of commands", H_VERSION, check=check_guest_info, ref_check=ref_guest_info),
    "cfg-allowed-guest-info": Known("version is quiesce-agent's; subset of commands", H_VERSION, check=check_guest_info, ref_check=ref_guest_info),
    "cfg-allow-and-block-guest-info": Known("version is quiesce-agent's; subset of commands", H_VERSION,
                                            check=check_guest_info, ref_check=ref_guest_info),
    "cfg-file-guest-info": Known("version is quiesce-agent's; subset of commands", H_VERSION, check=check_guest_info, ref_check=ref_guest_info),
    "cli-version": Known("-V prints quiesce-agent's name and version", H_VERSION, check=check_version_output,
                         ref_check=ref_cli_version),
    "cli-version-long": Known("--version prints quiesce-agent's name and version", H_VERSION,
                              check=check_version_output, ref_check=ref_cli_version),

    # Commands qemu-ga has and ours does not (yet).
    "cli-block-help": Known("`-b help` lists only the implemented commands", H_NOT_IMPLEMENTED,
                            check=check_block_help, ref_check=ref_block_help),
    # qemu-ga runs its implementation (7.2 has guest-get-devices for Windows only: disabled)
    "notimpl-guest-exec-status-pid0": not_implemented("guest-exec-status", error(b"Invalid parameter 'pid'")),
    "notimpl-guest-exec-status-no-args": not_implemented("guest-exec-status", error(b"Parameter 'pid' is missing")),
    "notimpl-guest-get-devices": not_implemented(
        "guest-get-devices", error(b"Command guest-get-devices has been disabled", b"CommandNotFound")),
    "notimpl-guest-get-memory-block-info": not_implemented(
        "guest-get-memory-block-info", ref_check=lambda ref, **_: [] if re.fullmatch(
            rb'\{"return": \{"size": \d+\}\}', ref.flat()[0]) else ["%r is not a block size" % ref.flat()[0]]),
    "notimpl-guest-ssh-get-authorized-keys-bad-arg": not_implemented(
        "guest-ssh-get-authorized-keys", error(b"Invalid parameter type for 'username', expected: string")),
    "notimpl-nested-arg-path": not_implemented(
        "guest-ssh-remove-authorized-keys", error(b"Invalid parameter type for 'keys[0]', expected: string")),
    "notimpl-unknown-beats-arguments-check": not_implemented(
        "guest-exec-status", b'{"id": 9, "error": {"class": "GenericError", "desc": '
        b'"Invalid parameter type for \'pid\', expected: integer"}}', id_json=b"9"),

    # Disk serials from sysfs when the guest has no udev database.
    "cmd-guest-get-disks": Known("adds the sysfs serial (no /run/udev/data here)", H_SERIAL, check=check_serial, ref_check=ref_no_serial),
    "cmd-guest-get-fsinfo": Known("adds the sysfs serial (no /run/udev/data here)", H_SERIAL, check=check_serial, ref_check=ref_no_serial),
    "cmd-several-in-one-write": Known("guest-get-disks adds the sysfs serial", H_SERIAL, check=check_serial, ref_check=ref_no_serial),

    # os-release: single quotes are quotes; an unterminated quote does not repeat the tail.
    "osrel-quoting": Known("single-quoted PRETTY_NAME is unquoted", H_OSRELEASE,
                           check=check_osinfo({"pretty-name": "Single Quoted"}),
                           ref_check=ref_osinfo({"pretty-name": "'Single"})),
    "osrel-unterminated-and-unicode": Known("unterminated ID; single-quoted NAME", H_OSRELEASE,
                                            check=check_osinfo({"id": "unterminated", "name": "x"}),
                                            ref_check=ref_osinfo({"id": "unterminatedd", "name": "'x'"})),
    "osrel-quote-edges": Known("'' is empty; unterminated VARIANT", H_OSRELEASE,
                               check=check_osinfo({"version": "", "variant": 'end"'}),
                               ref_check=ref_osinfo({"version": "''", "variant": 'end"\\"'})),

    "cli-relative-statedir": Known("a relative -t is refused with exit 1", H_STATEDIR,
                                   check=check_relative_statedir, ref_check=ref_relative_statedir),
    "cfg-logfile-quiet-log": Known("start and stop are logged at info level", H_LOG_DEFAULT,
                                   check=check_log_written,
                                   ref_check=lambda ref, **_: [] if ref == (True, False) else [
                                       "log file (exists, non-empty) %s, not (True, False)" % (ref,)]),

    # Connection handling.
    "conn-listen-backlog": Known("16 clients may wait instead of 2", H_BACKLOG, expect=[
        [b'{"return": {}, "id": "a"}'] + [Marker("<connect %d: ok>" % i) for i in range(4)]
        + [b'{"return": {}, "id": %d}' % i for i in range(4)], RUNNING],
        ref_expect=[[b'{"return": {}, "id": "a"}', Marker("<connect 0: ok>"), Marker("<connect 1: ok>"),
                     Marker("<connect 2: EAGAIN>"), Marker("<connect 3: EAGAIN>"),
                     b'{"return": {}, "id": 0}', b'{"return": {}, "id": 1}'], RUNNING]),
    "conn-close-with-unread-reply": Known("ours drops the client and serves the next one",
                                          H_CLIENT_GONE, expect=[[b'{"return": {}, "id": "b"}'], RUNNING],
                                          ref_expect=[[Marker("<B: connect failed: ConnectionRefusedError>")],
                                                      [Marker("<agent exited with status 0>")]]),

    # Quoted client input is cut at 256 bytes (qemu-ga quotes all of it).
    "quote-stray-257-bytes": Known("the stray token is quoted up to 256 bytes, then ...", H_QUOTE_CAP,
                                   expect=[error(b"JSON parse error, stray '\\\"" + b"a" * 255 + b"...'")]
                                   + RESYNC_CLEAN,
                                   ref_expect=[error(b"JSON parse error, stray '\\\"" + b"a" * 255 + b"\\n'")]
                                   + RESYNC_CLEAN),
    "quote-stray-1MiB-0x80": Known("256 of the 1 MiB + 2 bytes are quoted (qemu-ga: all, as 6 MiB of \\uFFFD)",
                                   H_QUOTE_CAP, expect=[error(b"JSON parse error, stray '\\\"" + b"\\uFFFD" * 255
                                                              + b"...'")] + RESYNC_CLEAN,
                                   ref_check=ref_quote_all(b"JSON parse error, stray '\\\"", 1 << 20, b"\\uFFFD",
                                                           b"\\n'")),
    "quote-command-257-bytes": Known("the command name is quoted up to 256 bytes, then ...", H_QUOTE_CAP,
                                     expect=[error(b"The command " + b"n" * 256 + b"... has not been found",
                                                   b"CommandNotFound")] + RESYNC_CLEAN,
                                     ref_expect=[error(b"The command " + b"n" * 257 + b" has not been found",
                                                       b"CommandNotFound")] + RESYNC_CLEAN),
    "quote-member-257-bytes": Known("the member name is quoted up to 256 bytes, then ...", H_QUOTE_CAP,
                                    expect=[error(b"QMP input member '" + b"m" * 256 + b"...' is unexpected")]
                                    + RESYNC_CLEAN,
                                    ref_expect=[error(b"QMP input member '" + b"m" * 257 + b"' is unexpected")]
                                    + RESYNC_CLEAN),
    "quote-parameter-257-bytes": Known("the argument name is quoted up to 256 bytes, then ...", H_QUOTE_CAP,
                                       expect=[error(b"Parameter '" + b"p" * 256 + b"...' is unexpected")]
                                       + RESYNC_CLEAN,
                                       ref_expect=[error(b"Parameter '" + b"p" * 257 + b"' is unexpected")]
                                       + RESYNC_CLEAN),
    # 4096 keys with one g_str_hash: ours names the first in QDict order.
    "args-4096-colliding-keys": Known("past the probe budget ours names the QDict-first unexpected key",
                                      H_COLLIDING, expect=[error(b"Parameter 'b!b!b!b!b!aBb!b!b!b!b!b!' is unexpected")]
                                      + RESYNC_CLEAN,
                                      ref_expect=[error(b"Parameter 'aBb!aBb!b!aBaBaBaBb!aBb!' is unexpected")]
                                      + RESYNC_CLEAN),
}

# -D: our default pidfile; the default hook when /etc/qemu/fsfreeze-hook exists.  Per case:
# whether it leaves the pidfile and the hook at their defaults (where qemu-ga shows its own
# default pidfile and no hook).
for _id, _pid, _hook in (
        ("cli-dump-default", True, True), ("cli-dump-options", False, True),
        ("cli-dump-long-options", False, True), ("cli-dump-block-three", True, True),
        ("cli-dump-block-twice", True, True), ("cli-dump-block-unknown", True, True),
        ("cli-dump-fsfreeze-hook-path", True, False), ("cli-dump-fsfreeze-hook-default", True, False),
        ("cli-dump-vsock", True, True), ("cli-dump-config-plus-cli", True, True),
        ("cli-dump-config-unknown-key", True, True), ("cli-dump-config-false-bools", True, True),
        ("cli-dump-config-bool-spellings", True, True), ("cli-dump-config-env", True, True),
        ("cli-dump-config-env-missing", True, True)):
    KNOWN[_id] = Known("our default pidfile, and the default hook where it exists", H_PIDFILE,
                       check=check_dump, ref_check=ref_dump(_pid, _hook))


# ---------------------------------------------------------------- the freeze family (test_freeze_family.py)
#
# Each run is one segment: the replies and observation pseudo-lines of the steps, the
# resync, and which test filesystems the agent left frozen.  {W} is the work directory.

THAWED = b'{"return": "thawed"}'
LEFT_NONE = Marker("<test filesystems left frozen: none>")


def freeze_run(*lines):
    return [list(lines) + RESYNC_CLEAN + [LEFT_NONE]]


def not_a_mount(path):
    return error(b"'%s' is not the mount point of a freezable filesystem" % path)


def hooks(calls):
    return Marker("<hook calls: %s>" % calls)


MARKER_ABSENT = Marker("<state marker: absent>")

KNOWN.update({
    "freeze-frozen-guest-info": Known("version is quiesce-agent's; subset of commands", H_VERSION,
                                      check=check_guest_info, ref_check=ref_guest_info),
    "fsinfo-with-loop-and-bind-mounts": Known("adds the sysfs serial (no /run/udev/data here)", H_SERIAL,
                                              check=check_serial, ref_check=ref_no_serial),

    # qemu-ga ignores list entries that match no mount; ours refuses the list, changes nothing.
    # (qemu-ga: an entry that matches no mount is skipped, the rest frozen: success)
    "freeze-trailing-slash": Known("'{W}/e/' is not a mount point string", H_NOT_A_MOUNT, expect=freeze_run(
        not_a_mount(b"{W}/e/"), THAWED, b'{"return": 0}'),
        ref_expect=freeze_run(b'{"return": 0}', THAWED, b'{"return": 0}')),
    "freeze-trailing-slashes-two": Known("'{W}/x//' is not a mount point string", H_NOT_A_MOUNT,
                                         expect=freeze_run(not_a_mount(b"{W}/x//"), THAWED, b'{"return": 0}'),
                                         ref_expect=freeze_run(b'{"return": 0}', THAWED, b'{"return": 0}')),
    "freeze-not-a-mount-point": Known("a directory inside a mount is refused, the mount is not frozen",
                                      H_NOT_A_MOUNT, expect=freeze_run(
                                          not_a_mount(b"{W}/e/lost+found"), THAWED, MARKER_ABSENT,
                                          b'{"return": 0}'),
                                      ref_expect=freeze_run(b'{"return": 1}', b'{"return": "frozen"}',
                                                            Marker("<state marker: present>"), b'{"return": 1}')),
    "freeze-not-a-mount-point-alone": Known("a directory inside a mount is refused", H_NOT_A_MOUNT,
                                            expect=freeze_run(not_a_mount(b"{W}/e/lost+found"), THAWED,
                                                              b'{"return": 0}'),
                                            ref_expect=freeze_run(b'{"return": 0}', THAWED, b'{"return": 0}')),
    "freeze-empty-string": Known("'' is refused", H_NOT_A_MOUNT, expect=freeze_run(
        not_a_mount(b""), THAWED, b'{"return": 0}'),
        ref_expect=freeze_run(b'{"return": 0}', THAWED, b'{"return": 0}')),
    "freeze-empty-string-and-mount": Known("'' is refused, the mount is not frozen", H_NOT_A_MOUNT,
                                           expect=freeze_run(not_a_mount(b""), THAWED, b'{"return": 0}'),
                                           ref_expect=freeze_run(b'{"return": 1}', b'{"return": "frozen"}',
                                                                 b'{"return": 1}')),

    # [] freezes nothing in both; qemu-ga still runs the freeze hook (and then owes a thaw hook
    # it only runs on the host's thaw), ours runs none.
    "hook-freeze-list-empty": Known("an empty list runs no hook", H_EMPTY_LIST, expect=freeze_run(
        b'{"return": 0}', hooks("none"), THAWED, MARKER_ABSENT, b'{"return": 0}', hooks("none")),
        ref_expect=freeze_run(b'{"return": 0}', hooks("freeze"), THAWED, MARKER_ABSENT, b'{"return": 0}',
                              hooks("freeze thaw"))),

    # Thaw hook: after every freeze hook exactly once, and never without one.
    "hook-thaw-when-thawed": Known("a thaw with no freeze hook before runs no hook", H_THAW_HOOK,
                                   expect=freeze_run(b'{"return": 0}', hooks("none"), THAWED),
                                   ref_expect=freeze_run(b'{"return": 0}', hooks("thaw"), THAWED)),
    "hook-freeze-of-nothing": Known("the thaw hook follows a freeze that froze nothing", H_THAW_HOOK,
                                    expect=freeze_run(b'{"return": 0}', hooks("freeze thaw"), THAWED,
                                                      MARKER_ABSENT, Marker("<{E} was still frozen: yes>")),
                                    ref_expect=freeze_run(b'{"return": 0}', hooks("freeze"), THAWED,
                                                          MARKER_ABSENT, Marker("<{E} was still frozen: yes>"))),
    "hook-freeze-fails": Known("the thaw hook follows a failed freeze hook", H_THAW_HOOK, expect=freeze_run(
        error(b"fsfreeze hook has failed with status 3"), hooks("freeze thaw"), THAWED, MARKER_ABSENT),
        ref_expect=freeze_run(error(b"fsfreeze hook has failed with status 3"), hooks("freeze"), THAWED,
                              MARKER_ABSENT)),
    "hook-killed-by-signal": Known("the thaw hook follows a killed freeze hook", H_THAW_HOOK, expect=freeze_run(
        error(b"fsfreeze hook has terminated abnormally"), hooks("freeze thaw"), THAWED, MARKER_ABSENT),
        ref_expect=freeze_run(error(b"fsfreeze hook has terminated abnormally"), hooks("freeze"), THAWED,
                              MARKER_ABSENT)),
    # qemu-ga's thaw tries to run the (missing) thaw hook and fails with access()'s error;
    # ours runs no hook when no freeze hook ran, so the thaw succeeds.
    "hook-missing-thaw": Known("a thaw with no freeze hook before runs no hook (so cannot fail on it)",
                               H_THAW_HOOK, expect=freeze_run(b'{"return": 0}', THAWED),
                               ref_expect=freeze_run(error(b"can't access fsfreeze hook '{W}/hooks/no-such-hook': "
                                                           b"No such file or directory"), THAWED)),
})
