"""Print the parse + loop check + requisitos extraction throughput on a generated corpus.

Usage::

    .venv/bin/python bench/parse_speed.py [--n 300] [--repeat 5]

Generates the corpus with /work/shared/bench/gen_corpus.py into a temporary folder, then times
`parse_to_json` (what `consultas parse` runs) over every mail, in one process.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from consultas.validators import normalize_email, normalize_phone
from intake.parse_command import parse_to_json

GEN_CORPUS = Path("/work/shared/bench/gen_corpus.py")


def main(argv: list[str] | None = None) -> int:
    """Generate the corpus, time it, print mails per second."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [sys.executable, str(GEN_CORPUS), "--n", str(args.n), "--out", folder],
            check=True,
            capture_output=True,
        )
        raws = [path.read_bytes() for path in sorted(Path(folder).glob("*.eml"))]
    own = frozenset({"consultas@mef.gob.pe"})
    best = float("inf")
    for _ in range(args.repeat):
        # Cached validators would make repeats look faster than a stream of new mails.
        normalize_phone.cache_clear()
        normalize_email.cache_clear()
        started = time.perf_counter()
        for raw in raws:
            parse_to_json(raw, own_addresses=own, own_message_id_domain="consultas.mef.gob.pe")
        best = min(best, time.perf_counter() - started)
    per_mail_ms = best / len(raws) * 1000
    rate = len(raws) / best
    print(f"{len(raws)} mails: {rate:.0f} mails/s ({per_mail_ms:.3f} ms per mail, best of {args.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
