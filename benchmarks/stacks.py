#!/usr/bin/env python
"""Summarise a py-spy profile written with `--format raw` (collapsed stacks).

    .venv/bin/py-spy record -r 500 -f raw -o /tmp/spy.txt -- .venv/bin/python \
        benchmarks/hotpath.py fanout --kind agent -n 1000 --repeat 30 --profiler none
    .venv/bin/python benchmarks/stacks.py /tmp/spy.txt

Prints the share of samples per leaf function (own time); for frames under `src/hubspoke`, the
inclusive share (the function and everything it calls); and each sample charged to the deepest
hubspoke function on its stack (its own code and the library calls it makes, with pydantic-ai's
share under it shown apart), which is how docs/performance.md breaks a dispatch down. Samples
outside the timed workload (imports, warm-up) are included: use a large --repeat, and --exclude
to drop what the benchmark does not time (opening and closing the store).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "src/", "lib/python3.11/", "benchmarks/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m['func']} ({path})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("path")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--under", default="", help="only stacks containing this frame substring")
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        help="drop stacks containing this frame substring (repeatable), e.g. SQLiteStore.close",
    )
    args = p.parse_args()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    charged: Counter[str] = Counter()
    total = 0
    with open(args.path) as f:
        for line in f:
            stack, _, count_s = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            if args.under and args.under not in stack:
                continue
            if any(x in stack for x in args.exclude):
                continue
            count = int(count_s)
            frames = stack.split(";")
            total += count
            own[short(frames[-1])] += count
            seen = set()
            deepest = -1
            for i, fr in enumerate(frames):
                name = short(fr)
                if "hubspoke/" in name:
                    deepest = i
                    if name not in seen:
                        seen.add(name)
                        inclusive[name] += count
            if deepest < 0:
                charged["(outside hubspoke frames: the event loop)"] += count
            elif any("pydantic_ai/" in fr for fr in frames[deepest + 1 :]):
                charged[f"pydantic-ai, called by {short(frames[deepest])}"] += count
            else:
                charged[short(frames[deepest])] += count
    print(f"{total} samples{' under ' + args.under if args.under else ''}\n")
    print("own time (leaf frames):")
    for name, c in own.most_common(args.top):
        print(f"  {100 * c / total:5.1f}%  {name}")
    print("\ninclusive time, hubspoke frames:")
    for name, c in inclusive.most_common(args.top):
        print(f"  {100 * c / total:5.1f}%  {name}")
    print("\ncharged to the deepest hubspoke frame:")
    for name, c in charged.most_common(args.top):
        print(f"  {100 * c / total:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
