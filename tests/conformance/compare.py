"""Compare what two agents sent, after the normalisation described in README.md.

Per reply line:
  1. framing, byte-exact: the line ended in '\n' (the reader only yields complete lines;
     leftovers show up as Marker pseudo-lines), a leading 0xFF exactly where the other
     side has one, the rest pure printable ASCII in qemu-ga's writer form (see
     replyjson.check_line: `": "`/`", "` separators, upper-case \\uXXXX escapes);
  2. content, structural: object members compared regardless of order; arrays in
     order; string literals compared by their *escaped text* (so `\\u00E9` vs `\\u00e9`
     vs a raw byte all differ); number literals by their text (so `0.10000000000000001`
     vs `0.1` differ); true/false/null by name;
  3. except at paths that a Tolerance covers (values that legitimately vary between
     two calls: clocks, counters), where type and a bound are checked instead.
The number of segments and of lines in each must be equal.
"""
import fnmatch

from replyjson import Obj, Str, Num, Lit, ReplyError, parse_line, check_line, dump
from harness import Marker

MAX_SHOWN_LINES = 24
MAX_SHOWN_BYTES = 400


# ---------------------------------------------------------------- tolerances

class Tolerance:
    """Check one varying value.  `pattern` is a path like "return.*.statistics.*"
    (dot-separated keys, * matches any key or index)."""

    def __init__(self, pattern):
        self.pattern = pattern.split(".")

    def matches(self, path):
        return len(path) == len(self.pattern) and all(
            fnmatch.fnmatchcase(str(p), q) for p, q in zip(path, self.pattern))

    def check(self, ref, ours, ref2):
        raise NotImplementedError


def _num(v):
    return v.value() if isinstance(v, Num) else None


class Between(Tolerance):
    """Ours is a number of the same kind (integer literal or not) as qemu-ga's, and lies
    between qemu-ga's readings before and after it (widened by `slack`).  Used for
    clocks and monotonic counters, read in the order qemu-ga, ours, qemu-ga."""

    def __init__(self, pattern, slack=0):
        super().__init__(pattern)
        self.slack = slack

    def check(self, ref, ours, ref2):
        if not isinstance(ours, Num) or not isinstance(ref, Num):
            return "expected a number like qemu-ga's %s, got %s" % (ref, ours)
        if ref.is_int() != ours.is_int():
            return "number kind differs: qemu-ga %s, ours %s" % (ref, ours)
        lo_hi = [_num(ref)] + ([_num(ref2)] if isinstance(ref2, Num) else [])
        lo, hi = min(lo_hi) - self.slack, max(lo_hi) + self.slack
        if not lo <= _num(ours) <= hi:
            return "%s outside [%s, %s] (qemu-ga read before/after: %s)" % (ours, lo, hi, lo_hi)
        return None


class Near(Tolerance):
    """Same kind of number, |ours - qemu-ga| <= tol."""

    def __init__(self, pattern, tol):
        super().__init__(pattern)
        self.tol = tol

    def check(self, ref, ours, ref2):
        if not isinstance(ours, Num) or not isinstance(ref, Num) or ref.is_int() != ours.is_int():
            return "expected a number like qemu-ga's %s, got %s" % (ref, ours)
        if abs(_num(ours) - _num(ref)) > self.tol:
            return "%s not within %s of qemu-ga's %s" % (ours, self.tol, ref)
        return None


# ---------------------------------------------------------------- structural compare

def _kind(v):
    return type(v).__name__


def _fmt_path(path):
    return ".".join(str(p) for p in path) or "<top>"


def compare_values(ref, ours, tolerances=(), ref2=None, path=()):
    """Problems (strings) between two parsed values."""
    for t in tolerances:
        if t.matches(path):
            p = t.check(ref, ours, ref2)
            return ["at %s: %s" % (_fmt_path(path), p)] if p else []
    if _kind(ref) != _kind(ours):
        return ["at %s: qemu-ga sent %s %s, ours %s %s" % (
            _fmt_path(path), _kind(ref), _short(dump(ref)), _kind(ours), _short(dump(ours)))]
    if isinstance(ref, Obj):
        rk = {k: v for k, v in ref}
        ok = {k: v for k, v in ours}
        r2 = {k: v for k, v in ref2} if isinstance(ref2, Obj) else {}
        probs = []
        missing = [k for k in rk if k not in ok]
        extra = [k for k in ok if k not in rk]
        if missing:
            probs.append("at %s: ours lacks member(s) %s" % (_fmt_path(path), ", ".join(missing)))
        if extra:
            probs.append("at %s: ours has extra member(s) %s" % (_fmt_path(path), ", ".join(extra)))
        for k in rk:
            if k in ok:
                probs += compare_values(rk[k], ok[k], tolerances, r2.get(k), path + (Str(k).value(),))
        return probs
    if isinstance(ref, list):
        probs = []
        if len(ref) != len(ours):
            probs.append("at %s: array length qemu-ga %d, ours %d" % (_fmt_path(path), len(ref), len(ours)))
        r2 = ref2 if isinstance(ref2, list) and len(ref2) == len(ref) else [None] * len(ref)
        for i, (a, b) in enumerate(zip(ref, ours)):
            probs += compare_values(a, b, tolerances, r2[i], path + (i,))
        return probs
    if str(ref) != str(ours):
        a, b = str(ref), str(ours)
        if max(len(a), len(b)) > 160:
            i = next((n for n, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            return ["at %s: literal of %d chars from qemu-ga, %d from ours; first difference at char %d: "
                    "qemu-ga ...%s..., ours ...%s..." % (_fmt_path(path), len(a), len(b), i,
                                                         a[max(0, i - 30):i + 30], b[max(0, i - 30):i + 30])]
        return ["at %s: qemu-ga sent %s, ours %s" % (_fmt_path(path), a, b)]
    return []


def _short(s, n=160):
    s = str(s)
    return s if len(s) <= n else "%s...(%d chars)" % (s[:n], len(s))


def compare_lines(ref_line, our_line, tolerances=(), ref2_line=None):
    if isinstance(ref_line, Marker) or isinstance(our_line, Marker):
        if type(ref_line) is not type(our_line) or str(ref_line) != str(our_line):
            return ["qemu-ga: %s, ours: %s" % (_short(repr(ref_line)), _short(repr(our_line)))]
        return []
    probs = ["ours: " + p for p in check_line(our_line)]
    probs += ["qemu-ga (suite bug?): " + p for p in check_line(ref_line)]
    if probs:
        return probs
    rd, rv = parse_line(ref_line)
    od, ov = parse_line(our_line)
    if rd != od:
        probs.append("0xFF delimiter: qemu-ga %s, ours %s" % ("yes" if rd else "no", "yes" if od else "no"))
    r2v = None
    if ref2_line is not None and not isinstance(ref2_line, Marker):
        try:
            r2v = parse_line(ref2_line)[1]
        except ReplyError:
            pass
    probs += compare_values(rv, ov, tolerances, r2v)
    return probs


def compare_results(ref, ours, tolerances=(), ref2=None):
    """Problems between two harness.Result (ref2: a second qemu-ga run, for Between)."""
    probs = []
    if ours.agent_died:
        probs.append("ours died: %s" % ours.agent_died)
    if ref.agent_died:
        probs.append("qemu-ga died (!): %s" % ref.agent_died)
    if len(ref.segments) != len(ours.segments):
        probs.append("segment count: qemu-ga %d, ours %d" % (len(ref.segments), len(ours.segments)))
    for si, (rs, os_) in enumerate(zip(ref.segments, ours.segments)):
        r2s = ref2.segments[si] if ref2 and si < len(ref2.segments) else []
        if len(rs) != len(os_):
            probs.append("segment %d: qemu-ga sent %d line(s), ours %d" % (si, len(rs), len(os_)))
        for li, (rl, ol) in enumerate(zip(rs, os_)):
            r2l = r2s[li] if li < len(r2s) else None
            for p in compare_lines(rl, ol, tolerances, r2l):
                probs.append("segment %d line %d: %s" % (si, li, p))
    return probs


def compare_expected(expect, ours, tolerances=()):
    """Problems between ours and a registry's expected segments (list of list of bytes)."""
    from harness import Result
    if expect and not isinstance(expect[0], list):
        expect = [expect]
    return compare_results(Result([list(s) for s in expect]), ours, tolerances)


# ---------------------------------------------------------------- readable failures

def render_line(l):
    if isinstance(l, Marker):
        return str(l)
    r = repr(bytes(l))
    if len(r) > MAX_SHOWN_BYTES:
        r = r[:MAX_SHOWN_BYTES] + "...' (%d bytes)" % len(l)
    return r


def render_segments(segments):
    out = []
    for si, seg in enumerate(segments):
        out.append("  segment %d: %d line(s)" % (si, len(seg)))
        idx = list(range(len(seg)))
        if len(seg) > MAX_SHOWN_LINES:
            idx = idx[:MAX_SHOWN_LINES - 4] + [None] + idx[-3:]
        for i in idx:
            out.append("    ..." if i is None else "    [%d] %s" % (i, render_line(seg[i])))
    return "\n".join(out)


def render_steps(steps):
    out = []
    for s in steps:
        if callable(s):
            s = s()
        if isinstance(s, (bytes, bytearray)):
            r = repr(bytes(s))
            out.append(r if len(r) <= 200 else r[:200] + "...' (%d bytes)" % len(s))
        else:
            out.append(repr(s))
    if len(out) > 12:
        out = out[:8] + ["... (%d writes in all)" % len(out)] + out[-3:]
    return "\n    ".join(out)


def report(case_id, problems, steps=None, ref=None, ours=None, expected=None, ref_expected=None):
    parts = ["conformance case %r: %d problem(s)" % (case_id, len(problems))]
    parts += ["  - " + p for p in problems[:40]]
    if len(problems) > 40:
        parts.append("  - ... %d more" % (len(problems) - 40))
    if steps is not None:
        parts.append("client wrote:\n    " + render_steps(steps))
    if ref is not None:
        parts.append("qemu-ga sent:\n" + render_segments(ref.segments))
    if ref_expected is not None:
        if ref_expected and not isinstance(ref_expected[0], list):
            ref_expected = [ref_expected]
        parts.append("registry records for qemu-ga:\n" + render_segments(ref_expected))
    if expected is not None:
        if expected and not isinstance(expected[0], list):
            expected = [expected]
        parts.append("registry expects from ours:\n" + render_segments(expected))
    if ours is not None:
        parts.append("ours sent:\n" + render_segments(ours.segments))
    return "\n".join(parts)
