"""Table-driven cases: a Case is one line in a test module's table.

    C("concat-two", [b'{"execute":"guest-ping"}{"execute":"guest-ping","id":1}'])

runs those writes against qemu-ga and ours (each on a fresh connection to a shared
agent of the named kind), resyncs, and compares.  See README.md.
"""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import (SELF_TEST, REF_BIN, OUR_BIN, SYNC_TIMEOUT, DRAIN, Agent, AgentSpec, run_steps,  # noqa: F401
                     stop_pair)
from compare import compare_results, report
import known_differences

DEFAULT = AgentSpec("default")
_EXEC = ThreadPoolExecutor(max_workers=1)


class Case:
    def __init__(self, id, steps, agent=DEFAULT, gap=0.0, tolerances=(), sandwich=False,
                 resync=True, slow=False, sync_timeout=SYNC_TIMEOUT):
        self.id = id
        self.steps = [s.encode() if isinstance(s, str) else s for s in steps]
        self.agent = agent            # AgentSpec: which kind of agent pair runs it
        self.gap = gap                # seconds between writes (0: write back to back)
        self.tolerances = tolerances  # compare.Tolerance list for varying values
        self.sandwich = sandwich      # run qemu-ga, ours, qemu-ga (for Between)
        self.resync = resync          # end with 0xFF + guest-sync-delimited
        self.slow = slow
        self.sync_timeout = sync_timeout

    def param(self):
        marks = [pytest.mark.slow] if self.slow else []
        return pytest.param(self, id=self.id, marks=marks)


C = Case


def params(cases):
    ids = [c.id for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, "duplicate case ids: %s" % dup
    ALL_IDS.update(ids)
    return [c.param() for c in cases]


ALL_IDS = set()   # every case id, so the registry test can spot stale entries


def cmd(name, args=None, id=None):
    """A request's bytes: execute `name`, with `args` and `id` as raw JSON text."""
    s = b'{"execute":"' + name.encode() + b'"'
    if args is not None:
        s += b',"arguments":' + args
    if id is not None:
        s += b',"id":' + id
    return s + b"}"


def register_ids(*ids):
    ALL_IDS.update(ids)
    return ids


class Pool:
    """One qemu-ga and one ours per AgentSpec name, started on first use."""

    def __init__(self):
        self.pairs = {}
        self.problems = []

    def get(self, spec):
        if spec.name not in self.pairs:
            ref = Agent("qemu-ga", REF_BIN, spec).start()
            try:
                ours = Agent("ours", OUR_BIN, spec).start()
            except Exception:
                ref.stop()
                raise
            self.pairs[spec.name] = (ref, ours)
        return self.pairs[spec.name]

    def check_alive(self, spec):
        """After a case: an agent that died is a failure; restart it for the next case."""
        probs = []
        for a in self.pairs.get(spec.name, ()):
            if not a.alive():
                status = a.proc.poll()
                err = a.stderr()
                a.restart()
                probs.append("%s exited during the case with status %s; stderr: %s" % (a.role, status, err[-2000:]))
        return probs

    def close(self):
        """Stop every agent with SIGTERM; ours must exit the way qemu-ga does."""
        if self.pairs:
            time.sleep(0.1)   # let every agent go idle (see harness.Agent.stop)
        for name, (ref, ours) in self.pairs.items():
            self.problems += ["agents %r: %s" % (name, p) for p in stop_pair(ref, ours, settle=0)]
        self.pairs = {}
        return self.problems


def run_case(pool, case):
    """Run one case on both agents and fail the test with both sides' bytes on a difference."""
    ref_agent, our_agent = pool.get(case.agent)
    kw = dict(gap=case.gap, resync=case.resync, sync_timeout=case.sync_timeout)
    steps = [s() if callable(s) else s for s in case.steps]   # build big inputs once
    if case.sandwich:   # order matters: qemu-ga, ours, qemu-ga
        ref = run_steps(ref_agent, steps, **kw)
        ours = run_steps(our_agent, steps, **kw)
        ref2 = run_steps(ref_agent, steps, **kw)
    else:               # independent: run both at once
        fut = _EXEC.submit(run_steps, ref_agent, steps, **kw)
        ours = run_steps(our_agent, steps, **kw)
        ref, ref2 = fut.result(), None
    del steps
    problems = pool.check_alive(case.agent)
    check_results(case.id, ref, ours, ref2=ref2, tolerances=case.tolerances, steps=case.steps,
                  extra_problems=problems)
    return ref, ours


def check_results(case_id, ref, ours, ref2=None, tolerances=(), steps=None, extra_problems=()):
    """Compare; for a registered difference, check each side against the registry
    instead (in self-test mode: compare, and check qemu-ga's side of the entry)."""
    known = known_differences.KNOWN.get(case_id)
    problems = list(extra_problems)
    if known is None or SELF_TEST:
        problems += compare_results(ref, ours, tolerances, ref2)
        if known is not None:
            problems += known_differences.reference_problems(known, ref, ref2, tolerances)
    else:
        problems += known_differences.problems(known, ref, ours, ref2, tolerances)
    if problems:
        pytest.fail(report(case_id, problems, steps, ref, ours,
                           expected=None if known is None or SELF_TEST else known.expect,
                           ref_expected=known.ref_expect if known else None), pytrace=False)


class FreshPair:
    """A qemu-ga and an ours started for one test and stopped (SIGTERM) at its end,
    for cases where agent state matters.  Ours must exit like qemu-ga."""

    def __init__(self, spec):
        self.spec = spec

    def __enter__(self):
        self.ref = Agent("qemu-ga", REF_BIN, self.spec).start()
        try:
            self.ours = Agent("ours", OUR_BIN, self.spec).start()
        except Exception:
            self.ref.stop()
            raise
        return self.ref, self.ours

    def __exit__(self, exc_type, exc, tb):
        problems = stop_pair(self.ref, self.ours)
        if exc_type is None and problems:
            pytest.fail("\n".join(problems), pytrace=False)
        return False


def run_fresh(case):
    """run_case on a pair started just for this case."""
    pool = Pool()
    try:
        return run_case(pool, case)
    finally:
        problems = pool.close()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)
