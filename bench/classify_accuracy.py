"""Measure the classifier's accuracy on the labelled set (and optionally a gen_corpus folder).

Usage::

    .venv/bin/python bench/classify_accuracy.py [--set tests/data/classification_set.jsonl]
        [--registry docs/red.example.yaml] [--corpus DIR_FROM_gen_corpus.py]

Prints accuracy overall and per expected órgano, the confusions, and the time per mail.
A prediction is right when both type and organo match (OGDAU triage counts as administrativa).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routing.classify import OrganoTopics, classify  # noqa: E402
from routing.red_registry_file import load_registry_file  # noqa: E402

#: gen_corpus.py topics -> the expected outcome against docs/red.example.yaml (None: OGDAU).
CORPUS_TOPICS: dict[str, str | None] = {
    "presupuesto": "DGPP",
    "siaf": "OGTI",
    "invierte": "DGPMI",
    "contrataciones": "DGA",
    "tesoreria": "DGTP",
    "endeudamiento": "DGTP",
    "tramite": None,
    "acceso_info": None,
}

Item = tuple[str, str, str | None]  # subject, text, expected organo (None: administrativa)


def load_set(path: Path) -> list[Item]:
    """Read the labelled JSONL set."""
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            items.append((row["subject"], row["text"], row["expected_organo"]))
    return items


def load_corpus(folder: Path) -> list[Item]:
    """Read a gen_corpus.py folder: the manifest's topic gives the expected organo."""
    items = []
    for line in (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        msg = BytesParser(policy=policy.default).parsebytes((folder / row["file"]).read_bytes())
        assert isinstance(msg, EmailMessage)
        part = msg.get_body(preferencelist=("plain",))
        text = part.get_content() if part is not None else ""
        items.append((str(msg["Subject"]), text, CORPUS_TOPICS[row["topic"]]))
    return items


def evaluate(name: str, items: Iterable[Item], organos: tuple[OrganoTopics, ...]) -> float:
    """Print the accuracy report for ``items`` and return the overall accuracy."""
    total: Counter[str] = Counter()
    right: Counter[str] = Counter()
    confusions: list[str] = []
    elapsed = 0.0
    count = 0
    for subject, text, expected in items:
        start = time.perf_counter()
        result = classify(subject, text, organos)
        elapsed += time.perf_counter() - start
        count += 1
        label = expected or "OGDAU"
        total[label] += 1
        if result.organo == expected:
            right[label] += 1
        else:
            confusions.append(
                f"  expected {label:<7} got {result.organo or 'OGDAU':<7} {subject!r}: {result.reason}"
            )
    accuracy = sum(right.values()) / max(count, 1)
    per_mail_ms = elapsed / max(count, 1) * 1e3
    print(f"== {name}: {sum(right.values())}/{count} = {accuracy:.1%} ({per_mail_ms:.3f} ms/mail)")
    for label in sorted(total):
        print(f"  {label:<8} {right[label]:>3}/{total[label]:<3} {right[label] / total[label]:.0%}")
    if confusions:
        print("confusions:")
        print("\n".join(confusions))
    return accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", type=Path, default=ROOT / "tests/data/classification_set.jsonl")
    parser.add_argument("--registry", type=Path, default=ROOT / "docs/red.example.yaml")
    parser.add_argument("--corpus", type=Path, help="a folder written by gen_corpus.py")
    args = parser.parse_args(argv)
    organos = load_registry_file(args.registry).organo_topics()
    if args.set.exists():
        evaluate(str(args.set.name), load_set(args.set), organos)
    if args.corpus:
        evaluate(f"gen_corpus {args.corpus}", load_corpus(args.corpus), organos)
    return 0


if __name__ == "__main__":
    sys.exit(main())
