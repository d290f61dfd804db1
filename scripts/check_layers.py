#!/usr/bin/env python3
"""Checks the rooms of the tree (DESIGN.md, "The rooms of router/").

Over the `#include "..."` lines of every production file:
 1. A room includes only the rooms it may (ALLOWED below, as each room's
    main header says in its "May include:" line), and ALLOWED itself has no
    cycle: the rooms form layers, so no include cycle can cross rooms.
 2. No include cycle between headers (x.h includes y.h includes x.h).
Within a room, an implementation file may use the room's other headers
(store_impl.cc uses writer.h, which names store.h's types): that is one
room's inside, not a cycle between parts of the house.

Prints each violation as FILE:LINE: what and why, and exits 1 if there is one.
Run from anywhere: python3 scripts/check_layers.py [ROOT]
`--self-test` checks the checker on a small tree with known faults.
"""
import os
import re
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
SOURCE_DIRS = ["base", "rules", "store", "router"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')

# room -> rooms it may include (itself always allowed).
ALLOWED = {
    "base": set(),
    "store": {"base"},
    "rules": {"base", "store"},
    "router/protocol": {"base"},
    "router/dicom": {"base"},
    "router/net": {"base", "router/protocol"},
    "router/record": {"base", "store", "rules"},
    "router/receive": {"base", "store", "rules", "router/protocol", "router/dicom", "router/net", "router/record"},
    "router/deliver": {"base", "store", "rules", "router/protocol", "router/dicom", "router/net", "router/record"},
    "router/operate": {"base", "store", "rules", "router/protocol", "router/dicom", "router/net", "router/record",
                       "router/receive", "router/deliver"},
    "router": {"base", "store", "rules", "router/protocol", "router/dicom", "router/net", "router/record", "router/receive",
               "router/deliver", "router/operate"},
    "router/cli": {"base", "store", "rules", "router/protocol", "router/dicom", "router/net", "router/record", "router/receive",
                   "router/deliver", "router/operate", "router"},
}


def room_of(path):
    parts = path.split("/")
    if parts[0] == "router" and len(parts) > 2:
        return "router/" + parts[1]
    return parts[0]


def room_cycles():
    """ALLOWED must be layers: no room may reach itself through others."""
    out = []
    for start in ALLOWED:
        seen, todo = set(), list(ALLOWED[start])
        while todo:
            r = todo.pop()
            if r == start:
                out.append(f"scripts/check_layers.py:1: rooms {start}/ and the ones it may include form a cycle")
                break
            if r not in seen:
                seen.add(r)
                todo.extend(ALLOWED.get(r, ()))
    return out


def main():
    files = []
    for d in SOURCE_DIRS:
        for dirpath, _, names in os.walk(os.path.join(ROOT, d)):
            for n in names:
                if n.endswith((".h", ".cc")):
                    files.append(os.path.relpath(os.path.join(dirpath, n), ROOT))
    files.sort()
    known = set(files)
    problems = []
    edges = {}  # header -> {included header: (file, line)}
    problems += room_cycles()
    for f in files:
        room = room_of(f)
        if room not in ALLOWED:
            problems.append(f"{f}:1: room '{room}' is not in scripts/check_layers.py's ALLOWED table; add it there")
            continue
        with open(os.path.join(ROOT, f), encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                inc = m.group(1)
                if inc not in known:
                    continue  # a generated or third-party header
                to_room = room_of(inc)
                if to_room != room and to_room not in ALLOWED[room]:
                    problems.append(f"{f}:{lineno}: room {room}/ includes {inc} (room {to_room}/), which it may not")
                if f.endswith(".h"):
                    edges.setdefault(f, {}).setdefault(inc, (f, lineno))
    # Cycles between headers: Tarjan's strongly connected components.
    index, low, stack, on_stack, sccs = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    for comp in sccs:
        members = set(comp)
        where = []
        for a in comp:
            for b, (f, lineno) in sorted(edges.get(a, {}).items()):
                if b in members:
                    where.append(f"{f}:{lineno} -> {b}")
        problems.append("include cycle between " + ", ".join(comp) + ":\n    " + "\n    ".join(where))
    for p in problems:
        print(p)
    if problems:
        print(f"check_layers: {len(problems)} problem(s) in {len(files)} files", file=sys.stderr)
        return 1
    print(f"check_layers: {len(files)} files, every include within its room's rules, rooms in layers, "
          "no include cycle between headers")
    return 0


def self_test():
    """A tree with one room breach and one header cycle must fail, naming
    both; the same tree without them must pass."""
    import subprocess
    import tempfile

    def run(files):
        with tempfile.TemporaryDirectory() as root:
            for path, text in files.items():
                os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
                with open(os.path.join(root, path), "w", encoding="utf-8") as fh:
                    fh.write(text)
            r = subprocess.run([sys.executable, os.path.abspath(__file__), root], capture_output=True, text=True)
            return r.returncode, r.stdout

    good = {
        "base/status.h": "",
    "rules/rule.h": '#include "base/status.h"\n',
        "router/protocol/pdu.h": '#include "base/status.h"\n',
        "router/receive/server.h": '#include "router/protocol/pdu.h"\n#include "router/receive/association.h"\n',
        "router/receive/association.h": '#include "base/status.h"\n',
        "router/receive/association.cc": '#include "router/receive/server.h"\n',
    }
    code, out = run(good)
    assert code == 0, out
    bad = dict(good)
    bad["rules/rule.h"] = '#include "router/protocol/pdu.h"\n'
    bad["router/receive/association.h"] += '#include "router/receive/server.h"\n'
    code, out = run(bad)
    assert code == 1, out
    assert "rules/rule.h:1: room rules/ includes router/protocol/pdu.h (room router/protocol/)" in out, out
    assert "include cycle between router/receive/association.h, router/receive/server.h" in out, out
    print("check_layers: self-test passed")
    return 0


if __name__ == "__main__":
    sys.exit(self_test() if sys.argv[1:] == ["--self-test"] else main())
