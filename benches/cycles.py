"""Reads callgrind profiles made with --cache-sim=yes --branch-sim=yes --compress-strings=no
(benches/cycles.sh) and weighs each request's events into estimated cycles:
    Ir + 10 x (I1 misses + D1 read misses + D1 write misses) + 15 x (mispredicted branches)
(an L1 miss that hits L2 costs ~10-14 cycles, a mispredict ~15-20; instructions retire at up to
several a cycle, so this overstates the instructions' share: a ratio, not a cycle count).

    python3 benches/cycles.py summary RESULTS        RESULTS lines: NAME PROFILE REQUESTS
    python3 benches/cycles.py top A NA B NB [N]      functions costing most in A over B (self)
    python3 benches/cycles.py callers PROFILE N FUNC  who calls FUNC (substring), with the calls' cost
"""
import collections
import sys

MISSES = ("I1mr", "D1mr", "D1mw")
MISPREDICTS = ("Bcm", "Bim")


def load(path):
    """Self cost per function and the call costs per (caller, callee)."""
    events, fn, cfn, in_call, calls = None, None, None, False, 0
    own = collections.defaultdict(lambda: collections.Counter())
    called = collections.defaultdict(lambda: collections.Counter())
    for line in open(path):
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("fn="):
            fn = line[3:].strip()
        elif line.startswith("cfn="):
            cfn = line[4:].strip()
        elif line.startswith("calls="):
            in_call, calls = True, int(line.split()[0][6:])
        elif line[:1].isdigit() or line[:1] in "+-*":
            values = dict(zip(events, map(int, line.split()[1:])))
            if in_call:
                called[(fn, cfn)].update(values)
                called[(fn, cfn)]["calls"] += calls
                in_call = False
            else:
                own[fn].update(values)
    return own, called


def cycles(c):
    return c["Ir"] + 10 * sum(c[e] for e in MISSES) + 15 * sum(c[e] for e in MISPREDICTS)


def totals(own):
    t = collections.Counter()
    for c in own.values():
        t.update(c)
    return t


def summary(results):
    rows = [line.split() for line in open(results) if line.strip()]
    base = None
    print(f"{'config':<6} {'requests':>8} {'instr':>9} {'I1 miss':>8} {'D1 miss':>8} "
          f"{'mispred':>8} {'est. cycles':>12} {'vs hop':>7}")
    for name, path, n in rows:
        n = int(n)
        t = totals(load(path)[0])
        c = cycles(t) / n
        if name == "hop":
            base = c
        ratio = f"{c / base:.3f}x" if base else "-"
        print(f"{name:<6} {n:>8} {t['Ir'] / n:>9.0f} {t['I1mr'] / n:>8.0f} "
              f"{(t['D1mr'] + t['D1mw']) / n:>8.0f} {(t['Bcm'] + t['Bim']) / n:>8.0f} "
              f"{c:>12.0f} {ratio:>7}")


def top(a, na, b, nb, n=30):
    own_a, own_b = load(a)[0], load(b)[0]
    na, nb = float(na), float(nb)
    rows = []
    for f in set(own_a) | set(own_b):
        ca, cb = own_a.get(f, collections.Counter()), own_b.get(f, collections.Counter())
        rows.append((cycles(ca) / na - cycles(cb) / nb, cycles(ca) / na,
                     ca["Ir"] / na - cb["Ir"] / nb, f))
    rows.sort(reverse=True)
    for d, c, ir, f in rows[:int(n)]:
        print(f"{d:8.0f} (self {c:7.0f}, instr {ir:+6.0f})  {f[:140]}")


def callers(path, n, func):
    _, called = load(path)
    n = float(n)
    rows = [(cycles(c) / n, c["calls"] / n, caller) for (caller, callee), c in called.items()
            if func in callee]
    for c, k, caller in sorted(rows, reverse=True)[:30]:
        print(f"{c:8.0f} cycles  {k:5.1f} calls  {caller[:140]}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"summary": summary, "top": top, "callers": callers}[cmd](*args)
