"""Print what each hostile mail of issue 16 costs `consultas parse`: time, peak memory, outcome.

Usage::

    .venv/bin/python bench/hostile_parse.py [--repeat 3]

The mails are those of ``tests/hostile_mails.py`` (a 2,000-deep multipart, 20,000 headers, a
5 MB line, a 40 MB attachment, NULs ...), generated in memory. Time is the best of ``--repeat``
runs of ``parse_to_json``; memory is the peak traced by ``tracemalloc`` in one more run (Python
allocations only, the mail's own bytes excluded).
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consultas.errors import MalformedMailError
from intake.parse_command import parse_to_json
from tests.hostile_mails import HOSTILE_MAILS


def _outcome(raw: bytes) -> str:
    try:
        parse_to_json(raw)
    except MalformedMailError as exc:
        return f"refused: {exc}"
    return "parsed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"| mail | bytes | parse (best of {args.repeat}) | peak memory | outcome |")
    print("|---|---|---|---|---|")
    for name, generate in HOSTILE_MAILS.items():
        raw = generate()
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            outcome = _outcome(raw)
            best = min(best, time.perf_counter() - started)
        tracemalloc.start()
        _outcome(raw)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"| {name} | {len(raw):,} | {best * 1000:.1f} ms | {peak / 2**20:.1f} MiB | {outcome} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
