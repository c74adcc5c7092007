"""Parse and re-serialise agent reply lines without losing anything a client sees.

A reply line is what an agent sends between two '\n': an optional 0xFF delimiter byte,
then one JSON object as qemu-ga's writer prints it.  qemu-ga's writer is not quite
JSON: doubles are printed with "%.17g", so an `id` of 1e400 comes back as `inf`
(and NaN would be `nan`).  Python's json module can't read that, and it would also
throw away the facts we want to compare (how a string was escaped, how a number was
printed), so this module keeps literals as their raw text:

    Str("\"caf\\u00E9\"")   the string literal exactly as sent, quotes included
    Num("1e+20")            the number literal exactly as sent (inf/-inf/nan too)
    Lit("true")             true / false / null
    Obj([(Str, value), ...]) members in the order sent
    list                    arrays

`dump(v)` writes a value back the way qemu-ga does (`": "` after keys, `", "` between
members, `{}`/`[]` when empty).  `check_line()` insists that a line is pure printable
ASCII and that dump(parse(line)) == line byte for byte: that is the framing check.
`dump(v, sort=True)` sorts object members, which gives the order-insensitive form that
two agents' replies are compared in (QDict hash order must not matter).
"""
import re
import sys

# Replies can nest as deep as qemu-ga's parser allows (1024) and this module recurses.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))

__all__ = ["Str", "Num", "Lit", "Obj", "ReplyError", "parse_line", "parse_value",
           "dump", "check_line", "to_py", "DELIM"]

DELIM = b"\xff"


class ReplyError(ValueError):
    pass


class Str(str):
    """A string literal's raw text, quotes included."""

    def value(self):
        return _unescape(self)


class Num(str):
    """A number literal's raw text (qemu-ga may print inf, -inf, nan, -nan)."""

    def is_int(self):
        return re.fullmatch(r"-?[0-9]+", self) is not None

    def value(self):
        if self.is_int():
            return int(self)
        return float(self)  # float() accepts inf/-inf/nan


class Lit(str):
    """true, false or null."""

    def value(self):
        return {"true": True, "false": False, "null": None}[self]


class Obj(list):
    """An object: a list of (Str key, value) pairs in the order they were sent."""

    def get(self, key, default=None):
        for k, v in self:
            if k.value() == key:
                return v
        return default

    def keys_py(self):
        return [k.value() for k, _ in self]


_WS = b" \t\r\n"
_NUM_RE = re.compile(rb"-?(?:inf|nan|(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)")
_STR_RE = re.compile(rb'"(?:[^"\\\x00-\x1f\x7f-\xff]|\\(?:["\\/bfnrt]|u[0-9A-Fa-f]{4}))*"')


class _Parser:
    def __init__(self, text):
        self.t = text
        self.i = 0

    def ws(self):
        while self.i < len(self.t) and self.t[self.i] in _WS:
            self.i += 1

    def fail(self, what):
        raise ReplyError("%s at byte %d: %r" % (what, self.i, self.t[self.i:self.i + 40]))

    def value(self):
        self.ws()
        if self.i >= len(self.t):
            self.fail("unexpected end")
        c = self.t[self.i:self.i + 1]
        if c == b"{":
            return self.obj()
        if c == b"[":
            return self.arr()
        if c == b'"':
            m = _STR_RE.match(self.t, self.i)
            if not m:
                self.fail("bad string literal (raw control/non-ASCII byte or bad escape?)")
            self.i = m.end()
            return Str(m.group().decode("ascii"))
        for lit in (b"true", b"false", b"null"):
            if self.t.startswith(lit, self.i):
                self.i += len(lit)
                return Lit(lit.decode())
        m = _NUM_RE.match(self.t, self.i)
        if m and m.end() > self.i:
            self.i = m.end()
            return Num(m.group().decode("ascii"))
        self.fail("expected a value")

    def obj(self):
        self.i += 1
        members = Obj()
        seen = set()
        self.ws()
        if self.t[self.i:self.i + 1] == b"}":
            self.i += 1
            return members
        while True:
            self.ws()
            k = self.value()
            if not isinstance(k, Str):
                self.fail("object key is not a string")
            if k.value() in seen:
                self.fail("duplicate key %s in a reply" % k)
            seen.add(k.value())
            self.ws()
            if self.t[self.i:self.i + 1] != b":":
                self.fail("expected ':'")
            self.i += 1
            members.append((k, self.value()))
            self.ws()
            c = self.t[self.i:self.i + 1]
            self.i += 1
            if c == b"}":
                return members
            if c != b",":
                self.i -= 1
                self.fail("expected ',' or '}'")

    def arr(self):
        self.i += 1
        items = []
        self.ws()
        if self.t[self.i:self.i + 1] == b"]":
            self.i += 1
            return items
        while True:
            items.append(self.value())
            self.ws()
            c = self.t[self.i:self.i + 1]
            self.i += 1
            if c == b"]":
                return items
            if c != b",":
                self.i -= 1
                self.fail("expected ',' or ']'")


def parse_value(text: bytes):
    p = _Parser(text)
    v = p.value()
    p.ws()
    if p.i != len(text):
        p.fail("trailing bytes after the value")
    return v


def parse_line(line: bytes):
    """(delimited, value) for one reply line (without its '\n')."""
    delim = line.startswith(DELIM)
    return delim, parse_value(line[1:] if delim else line)


def dump(v, sort=False) -> str:
    if isinstance(v, Obj):
        items = sorted(v, key=lambda kv: kv[0]) if sort else list(v)
        return "{" + ", ".join("%s: %s" % (k, dump(x, sort)) for k, x in items) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(dump(x, sort) for x in v) + "]"
    return str(v)


def check_line(line: bytes):
    """Framing problems of one reply line (empty list if it is well-formed)."""
    problems = []
    body = line[1:] if line.startswith(DELIM) else line
    bad = [b for b in body if b < 0x20 or b > 0x7E]
    if bad:
        problems.append("not pure printable ASCII: bytes %s" % sorted({"0x%02X" % b for b in bad}))
    if DELIM in body:
        problems.append("0xFF inside the reply, not only as the first byte")
    try:
        v = parse_value(body)
    except ReplyError as e:
        problems.append("does not parse: %s" % e)
        return problems
    if not isinstance(v, Obj):
        problems.append("reply is not a JSON object")
    again = dump(v).encode("ascii")
    if again != body:
        i = next((n for n, (a, b) in enumerate(zip(again, body)) if a != b), min(len(again), len(body)))
        problems.append("not in qemu-ga's writer form (separators/spacing); first difference at byte %d: "
                        "sent %r, writer form %r" % (i, body[max(0, i - 20):i + 20], again[max(0, i - 20):i + 20]))
    for s in _strings(v):
        for m in re.finditer(r"\\(u[0-9A-Fa-f]{4}|.)", s):
            hexd = m.group(1)[1:]
            if m.group(1)[0] == "u" and hexd != hexd.upper():
                problems.append("lower-case hex in escape %r (qemu-ga writes upper case)" % m.group())
                return problems
    return problems


def _strings(v):
    if isinstance(v, Obj):
        for k, x in v:
            yield k
            yield from _strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from _strings(x)
    elif isinstance(v, Str):
        yield v


_ESC = {"\"": "\"", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(raw):
    s = raw[1:-1]
    out = []
    i = 0
    units = []

    def flush():
        if units:
            out.append(b"".join(u.to_bytes(2, "big") for u in units).decode("utf-16-be", "surrogatepass"))
            units.clear()
    while i < len(s):
        c = s[i]
        if c == "\\":
            e = s[i + 1]
            if e == "u":
                units.append(int(s[i + 2:i + 6], 16))
                i += 6
                continue
            flush()
            out.append(_ESC[e])
            i += 2
        else:
            flush()
            out.append(c)
            i += 1
    flush()
    return "".join(out)


def to_py(v):
    """Plain Python data (dict/list/str/int/float/bool/None) for predicates."""
    if isinstance(v, Obj):
        return {k.value(): to_py(x) for k, x in v}
    if isinstance(v, list):
        return [to_py(x) for x in v]
    return v.value()
