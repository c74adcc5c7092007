"""Command lines that run to exit: -V, -D (dump config), -b help, and fatal errors.

Compared, by mode:
  keyfile  exit status; stdout parsed as a key file (groups, keys, values compared;
           not the bytes); stderr empty on both or non-empty on both
  error    exit status; both print something on stderr; stdout empty on both or not
  status   exit status; stdout non-empty on both; stderr empty or not on both
  fatal    exit status; both print something on stderr
Error texts are not compared (qemu-ga prefixes timestamps and program names).

`config` is a key file written to the temp dir and passed as `-c FILE` (QGA_CONF=FILE for
qemu-ga 7.2, which has no -c), like AgentSpec.config.  Raw `-c` in args is passed as is.
"""
import os
import shutil
import subprocess
import tempfile

import pytest

import known_differences
from cases import register_ids
from harness import REF_BIN, OUR_BIN, SELF_TEST, supports

FULL_CONFIG = ("[general]\ndaemon=false\nmethod=unix-listen\npath=/tmp/qc-nowhere/sock\n"
               "logfile=/tmp/qc-nowhere/log\npidfile=/tmp/qc-nowhere/pid\nfsfreeze-hook=/tmp/qc-nowhere/hook\n"
               "statedir=/tmp/qc-nowhere\nverbose=true\nretry-path=true\nblock-rpcs=guest-ping,guest-info\n")


class Cli:
    def __init__(self, id, args, mode, env=None, config=None, files=None):
        self.id, self.args, self.mode = id, args, mode
        self.env, self.config, self.files = env or {}, config, files or {}


CASES = [
    Cli("cli-version", ["-V"], "exact"),
    Cli("cli-version-long", ["--version"], "exact"),
    Cli("cli-help", ["-h"], "status"),
    Cli("cli-block-help", ["-b", "help"], "exact"),
    Cli("cli-dump-default", ["-D"], "keyfile"),
    Cli("cli-dump-options", ["-D", "-m", "unix-listen", "-p", "/tmp/qc-x.sock", "-t", "/tmp/qc-state", "-v",
                             "-l", "/tmp/qc-log", "-f", "/tmp/qc-pid", "-r", "-b", "guest-ping,guest-get-time"],
        "keyfile"),
    Cli("cli-dump-long-options", ["--dump-conf", "--method=isa-serial", "--path=/dev/ttyS9", "--statedir=/tmp/qc-s",
                                  "--verbose", "--logfile=/tmp/qc-l", "--pidfile=/tmp/qc-p", "--retry-path",
                                  "--block-rpcs=guest-info"], "keyfile"),
    Cli("cli-dump-block-three", ["-D", "-b", "guest-ping,guest-get-time,guest-info"], "keyfile"),
    Cli("cli-dump-block-twice", ["-D", "-b", "guest-ping", "-b", "guest-info"], "keyfile"),
    Cli("cli-dump-block-unknown", ["-D", "-b", "no-such-command"], "keyfile"),
    Cli("cli-dump-fsfreeze-hook-path", ["-D", "-F/tmp/qc-hook"], "keyfile"),
    Cli("cli-dump-fsfreeze-hook-default", ["-D", "-F"], "keyfile"),
    Cli("cli-dump-vsock", ["-D", "-m", "vsock-listen", "-p", "3:1234"], "keyfile"),
    Cli("cli-dump-config-file", ["-D"], "keyfile", config=FULL_CONFIG),
    Cli("cli-dump-config-plus-cli", ["-D", "-b", "guest-get-time", "-p", "/tmp/qc-cli"], "keyfile",
        config="[general]\nblock-rpcs=guest-ping\npath=/tmp/qc-conf\n"),
    Cli("cli-dump-config-unknown-key", ["-D"], "keyfile", config="[general]\nfoo=bar\n[other]\nx=1\n"),
    Cli("cli-dump-config-false-bools", ["-D"], "keyfile",
        config="[general]\ndaemon=false\nverbose=false\nretry-path=false\n"),
    Cli("cli-dump-config-bool-spellings", ["-D"], "keyfile", config="[general]\nverbose=1\nretry-path=0\n"),
    Cli("cli-dump-config-env", ["-D"], "keyfile", env={"QGA_CONF": "{dir}/env.conf"},
        files={"env.conf": "[general]\nverbose=true\nblock-rpcs=guest-ping\n"}),
    Cli("cli-dump-config-env-missing", ["-D"], "keyfile", env={"QGA_CONF": "{dir}/no-such.conf"}),
    Cli("cli-config-env-bad-bool", ["-D"], "error", env={"QGA_CONF": "{dir}/bad.conf"},
        files={"bad.conf": "[general]\nverbose=notabool\n"}),
    Cli("cli-config-env-garbage", ["-D"], "error", env={"QGA_CONF": "{dir}/bad.conf"},
        files={"bad.conf": "garbage\n"}),
    Cli("cli-config-env-directory", ["-D"], "error", env={"QGA_CONF": "{dir}"}),
    Cli("cli-config-bad-bool", ["-D"], "error", config="[general]\nverbose=notabool\n"),
    # qemu-ga 7.2 has no -c, so it fails with "invalid option"; ours must fail too (the
    # file is missing).  Both are fatal errors on stderr with the same exit status.
    Cli("cli-config-missing", ["-c", "{dir}/no-such.conf", "-D"], "fatal"),
    Cli("cli-bad-method", ["-m", "bogus", "-p", "{dir}/s", "-t", "{dir}"], "error"),
    Cli("cli-no-path", ["-m", "unix-listen", "-t", "{dir}"], "error"),
    Cli("cli-bind-fails", ["-m", "unix-listen", "-p", "{dir}/no/such/dir/s", "-t", "{dir}"], "error"),
    Cli("cli-relative-statedir", ["-m", "unix-listen", "-p", "{dir}/s", "-t", "relative"], "error"),
    Cli("cli-unknown-long-option", ["--bogus"], "error"),
    Cli("cli-unknown-short-option", ["-Z"], "error"),
    Cli("cli-missing-option-argument", ["-b"], "error"),
]
register_ids(*[c.id for c in CASES])


class CliResult:
    def __init__(self, status, stdout, stderr):
        self.status, self.stdout, self.stderr = status, stdout, stderr

    def __repr__(self):
        return "exit %s\n    stdout: %r\n    stderr: %r" % (self.status, self.stdout[:1500], self.stderr[:600])


def run_cli(binary, case):
    d = tempfile.mkdtemp(prefix="qc-", dir="/tmp")
    try:
        for name, text in case.files.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text.replace("{dir}", d))
        args = [a.replace("{dir}", d) for a in case.args]
        env = {k: v for k, v in os.environ.items() if k not in ("QGA_CONF", "QGA_OS_RELEASE", "LISTEN_FDS", "LISTEN_PID")}
        env.update({k: v.replace("{dir}", d) for k, v in case.env.items()})
        if case.config is not None:
            path = os.path.join(d, "agent.conf")
            with open(path, "w") as f:
                f.write(case.config.replace("{dir}", d))
            if supports(binary, "--config"):
                args = ["-c", path] + args
            else:
                env["QGA_CONF"] = path
        p = subprocess.Popen([binary] + args, cwd=d, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = p.communicate(timeout=5)
            status = p.returncode
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            status = "<still running after 5 s>"
        return CliResult(status, out, err)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def parse_keyfile(text):
    """{group: {key: value}} of a GLib key file; raises ValueError on other lines."""
    groups, cur = {}, None
    for line in text.split("\n"):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("[") and s.endswith("]"):
            cur = groups.setdefault(s[1:-1], {})
            continue
        if "=" not in s or cur is None:
            raise ValueError("not a key file line: %r" % line)
        k, v = s.split("=", 1)
        if k.strip() in cur:
            raise ValueError("duplicate key %r" % k.strip())
        cur[k.strip()] = v.strip()
    return groups


def compare_cli(mode, ref, ours):
    probs = []
    if ref.status != ours.status:
        probs.append("exit status: qemu-ga %s, ours %s" % (ref.status, ours.status))
    if mode == "exact":
        if ref.stdout != ours.stdout:
            probs.append("stdout differs")
        if bool(ref.stderr) != bool(ours.stderr):
            probs.append("stderr empty: qemu-ga %s, ours %s" % (not ref.stderr, not ours.stderr))
    elif mode == "keyfile":
        if bool(ref.stderr) != bool(ours.stderr):
            probs.append("stderr empty: qemu-ga %s, ours %s" % (not ref.stderr, not ours.stderr))
        try:
            rk = parse_keyfile(ref.stdout.decode())
        except ValueError as e:
            return probs + ["qemu-ga's stdout (suite bug?): %s" % e]
        try:
            ok = parse_keyfile(ours.stdout.decode())
        except (ValueError, UnicodeDecodeError) as e:
            return probs + ["ours' stdout is not a key file: %s" % e]
        if not ours.stdout.endswith(b"\n") and ref.stdout.endswith(b"\n"):
            probs.append("ours' stdout does not end in a newline")
        if list(rk) != list(ok):
            probs.append("groups: qemu-ga %s, ours %s" % (list(rk), list(ok)))
        for g in rk:
            rg, og = rk[g], ok.get(g, {})
            for k in rg:
                if k not in og:
                    probs.append("[%s] %s: qemu-ga %r, ours has no such key" % (g, k, rg[k]))
                elif rg[k] != og[k]:
                    probs.append("[%s] %s: qemu-ga %r, ours %r" % (g, k, rg[k], og[k]))
            for k in og:
                if k not in rg:
                    probs.append("[%s] %s: ours %r, qemu-ga has no such key" % (g, k, og[k]))
            if [k for k in rg if k in og] != [k for k in og if k in rg]:
                probs.append("[%s] key order: qemu-ga %s, ours %s" % (g, list(rg), list(og)))
    elif mode in ("error", "fatal"):
        if not ref.stderr:
            probs.append("qemu-ga printed no error (suite bug?)")
        if not ours.stderr:
            probs.append("ours printed no error on stderr")
        if mode == "error" and bool(ref.stdout) != bool(ours.stdout):
            probs.append("stdout empty: qemu-ga %s, ours %s" % (not ref.stdout, not ours.stdout))
    elif mode == "status":
        if not ours.stdout:
            probs.append("ours printed nothing on stdout")
        if bool(ref.stderr) != bool(ours.stderr):
            probs.append("stderr empty: qemu-ga %s, ours %s" % (not ref.stderr, not ours.stderr))
    return probs


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli(case):
    ref = run_cli(REF_BIN, case)
    ours = run_cli(OUR_BIN, case)
    known = known_differences.KNOWN.get(case.id)
    if known is not None and not SELF_TEST:
        probs = known_differences.problems(known, ref, ours)
    else:
        probs = compare_cli(case.mode, ref, ours)
        if known is not None:
            probs += known_differences.reference_problems(known, ref)
    if probs:
        pytest.fail("conformance case %r: %d problem(s)\n%s\ncommand line: %s%s\nqemu-ga: %r\nours:    %r" % (
            case.id, len(probs), "\n".join("  - " + p for p in probs), " ".join(case.args),
            "  (+ config file %r)" % case.config if case.config else "", ref, ours), pytrace=False)
