"""Options that change what clients see: -b/--block-rpcs, -a/--allow-rpcs, -c config
files, and the old --blacklist spelling.

qemu-ga 7.2 has no -a and no -c.  harness.adapt() gives it the equivalent: QGA_CONF=FILE
for `-c FILE`, and for an allow list A the block list (all commands - A) (plus any
blocked ones).  The set of disabled commands is then the same, so every reply must be.
"""
import os

import pytest

from cases import C, DRAIN, cmd, params, register_ids, run_case
from harness import AgentSpec
from compare import Near
import known_differences
from harness import SELF_TEST

SECOND = 10**9


TIME_TOL = [Near("return", 5 * SECOND)]

BLOCKED = AgentSpec("blocked", args=["-b", "guest-ping,guest-get-time"])
BLOCKED_UNKNOWN = AgentSpec("blocked-unknown", args=["-b", "guest-ping,no-such-command"])
BLOCKED_TWICE = AgentSpec("blocked-twice", args=["-b", "guest-ping", "--block-rpcs=guest-get-host-name"])
BLOCKED_SYNC = AgentSpec("blocked-sync", args=["-b", "guest-sync-delimited,guest-sync"])
BLACKLIST = AgentSpec("blacklist-alias", args=["--blacklist=guest-ping"])
ALLOWED = AgentSpec("allowed", args=["-a", "guest-ping,guest-get-time,guest-sync-delimited"])
ALLOWED_LONG = AgentSpec("allowed-long", args=["--allow-rpcs=guest-ping,guest-sync-delimited,guest-info"])
ALLOW_AND_BLOCK = AgentSpec("allow-and-block", args=[
    "-a", "guest-ping,guest-get-time,guest-info,guest-sync-delimited", "-b", "guest-get-time"])
CFG_FILE = AgentSpec("cfg-file", args=["-b", "guest-get-host-name"], config=(
    "[general]\nblock-rpcs=guest-get-time\nverbose=true\n"))
CFG_ALLOW = AgentSpec("cfg-allow", config=(
    "[general]\nallow-rpcs=guest-ping,guest-info,guest-sync-delimited\n"))
CFG_CHANNEL = AgentSpec("cfg-channel", channel=False, config=(
    "# comment\n[general]\nmethod=unix-listen\npath={dir}/s\nstatedir={dir}\nverbose=false\n"
    "block-rpcs=guest-get-timezone\n"))
CFG_CLI_WINS = AgentSpec("cfg-cli-wins", config=(
    "[general]\nmethod=virtio-serial\npath=/dev/null/nonexistent\nstatedir=/nonexistent\n"))

CASES = [
    C("cfg-blocked-ping", [cmd("guest-ping", id=b"1")], agent=BLOCKED),
    C("cfg-blocked-get-time", [cmd("guest-get-time")], agent=BLOCKED),
    C("cfg-blocked-beats-args-check", [cmd("guest-ping", b'{"x":1}')], agent=BLOCKED),
    C("cfg-blocked-shape-check-first", [cmd("guest-ping", b"[]")], agent=BLOCKED),
    C("cfg-blocked-other-commands-work", [cmd("guest-get-host-name") + cmd("guest-sync", b'{"id":5}')], agent=BLOCKED),
    C("cfg-blocked-unknown-command", [cmd("nope")], agent=BLOCKED),
    C("cfg-blocked-guest-info", [cmd("guest-info")], agent=BLOCKED),
    C("cfg-blocked-unknown-name-ignored", [cmd("guest-ping") + cmd("guest-get-host-name")], agent=BLOCKED_UNKNOWN),
    C("cfg-blocked-twice", [cmd("guest-ping") + cmd("guest-get-host-name") + cmd("guest-get-timezone")],
      agent=BLOCKED_TWICE),
    C("cfg-blocked-sync-commands", [cmd("guest-sync-delimited", b'{"id":1}') + cmd("guest-sync", b'{"id":2}') +
                                    b"\xff" + cmd("guest-ping")], agent=BLOCKED_SYNC, resync=False),
    C("cfg-blacklist-alias", [cmd("guest-ping") + cmd("guest-get-host-name")], agent=BLACKLIST),
    C("cfg-allowed-listed-work", [cmd("guest-ping")], agent=ALLOWED),
    C("cfg-allowed-get-time", [cmd("guest-get-time")], agent=ALLOWED, tolerances=TIME_TOL),
    C("cfg-allowed-others-disabled", [cmd("guest-get-host-name", id=b"2") + cmd("guest-info") +
                                      cmd("guest-sync", b'{"id":3}')], agent=ALLOWED),
    C("cfg-allowed-unknown-still-not-found", [cmd("nope")], agent=ALLOWED),
    C("cfg-allowed-guest-info", [cmd("guest-info")], agent=ALLOWED_LONG),
    C("cfg-allow-and-block-ping", [cmd("guest-ping") + cmd("guest-get-time")], agent=ALLOW_AND_BLOCK),
    C("cfg-allow-and-block-guest-info", [cmd("guest-info")], agent=ALLOW_AND_BLOCK),
    C("cfg-file-blocks", [cmd("guest-get-time") + cmd("guest-get-host-name") + cmd("guest-ping")], agent=CFG_FILE),
    C("cfg-file-guest-info", [cmd("guest-info")], agent=CFG_FILE),
    C("cfg-file-allow-rpcs", [cmd("guest-ping") + cmd("guest-get-host-name")], agent=CFG_ALLOW),
    C("cfg-file-channel-from-config", [cmd("guest-ping") + cmd("guest-get-timezone")], agent=CFG_CHANNEL),
    C("cfg-file-command-line-wins", [cmd("guest-ping")], agent=CFG_CLI_WINS),
]


@pytest.mark.parametrize("case", params(CASES))
def test_config(pool, case):
    run_case(pool, case)


LOGGED = AgentSpec("logfile-verbose", args=["-l", "{dir}/agent.log", "-v"])
LOGGED_QUIET = AgentSpec("logfile-quiet", args=["-l", "{dir}/agent.log"])


# the log-file facts of each case may be registered as "<case id>-log"
register_ids("cfg-logfile-verbose-log", "cfg-logfile-quiet-log")


@pytest.mark.parametrize("spec", [LOGGED, LOGGED_QUIET], ids=["cfg-logfile-verbose", "cfg-logfile-quiet"])
def test_logfile(pool, spec):
    """-l FILE: the agent works, and the log file exists (and is non-empty) exactly when
    qemu-ga's does.  The text itself is not compared (timestamps, wording)."""
    case = C("cfg-" + spec.name, [cmd("guest-ping") + cmd("nope")], agent=spec)
    run_case(pool, case)
    ref, ours = pool.get(spec)
    facts = []
    for a in (ref, ours):
        p = os.path.join(a.dir, "agent.log")
        facts.append((os.path.exists(p), os.path.exists(p) and os.path.getsize(p) > 0))
    known = known_differences.KNOWN.get(case.id + "-log")
    if known is not None and not SELF_TEST:
        probs = known_differences.problems(known, facts[0], facts[1])
        assert not probs, "\n".join(probs)
        return
    if known is not None:
        probs = known_differences.reference_problems(known, facts[0])
        assert not probs, "\n".join(probs)
    assert facts[0] == facts[1], ("log file (exists, non-empty): qemu-ga %s, ours %s; ours' stderr: %r"
                                  % (facts[0], facts[1], ours.stderr()[-500:]))
