"""Measure the classifier on the held-out third of the labelled set, and a correction's effect.

Usage::

    .venv/bin/python bench/classify_accuracy.py [--registry docs/red.example.yaml]
        [--corpus DIR_FROM_gen_corpus.py] [--show-misses]

The model is trained exactly as ``consultas classify --retrain`` trains it without corrections
(the registry's topics and vocabulary, the ``train`` rows of routing/data/labelled_consultas.jsonl
and routing/data/classification_set.jsonl) and evaluated on the ``heldout`` rows, which nothing
was tuned on. A prediction is right when the organo matches (None: OGDAU, administrativa or
triage); "wrong organo" counts técnica routings to an organo other than the expected one, the
error the service must not make. The rules alone are shown beside it.

Then the CPU time per consulta (process time, best of 7 passes over the 314 labelled consultas)
and the correction check: a consulta and a similar later one, both unrouted by the model
trained on the built-in data; one correction of the first (as ``record_correction`` stores it)
and a retrain; the second's route is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routing.classify import OrganoTopics, Predictor, classify  # noqa: E402
from routing.learning import (  # noqa: E402
    CORRECTION_WEIGHT,
    LABELLED_SET,
    Example,
    builtin_examples,
    packaged_rows,
    train_model,
)
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
#: The correction check (written for it, in no labelled set): the first consulta is corrected to
#: CORRECTED_TO, the second is the next similar one.
CORRECTED = (
    "Junta de regantes",
    "La junta de regantes nos pide dinero para limpiar el canal cada año, podemos entregarselo?",
)
NEXT_SIMILAR = (
    "Apoyo a la junta de regantes",
    "Cada año la junta de regantes pide a la municipalidad plata para la limpieza del canal, "
    "se le puede dar?",
)
CORRECTED_TO = "DGPP"

Item = tuple[str, str, str | None]  # subject, text, expected organo (None: OGDAU)


def heldout_items() -> list[Item]:
    """The held-out third of the labelled set."""
    return [
        (row["subject"], row["text"], row["expected_organo"])
        for row in packaged_rows(LABELLED_SET)
        if row["split"] == "heldout"
    ]


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


def evaluate(
    name: str,
    items: Sequence[Item],
    organos: tuple[OrganoTopics, ...],
    model: Predictor | None,
    *,
    show_misses: bool,
) -> tuple[float, int]:
    """Print accuracy, OGDAU misses and wrong organos for ``items``; return (accuracy, wrong)."""
    total: Counter[str] = Counter()
    right: Counter[str] = Counter()
    misses: list[str] = []
    wrong = to_ogdau = 0
    start = time.perf_counter()
    for subject, text, expected in items:
        result = classify(subject, text, organos, model=model)
        label = expected or "OGDAU"
        total[label] += 1
        if result.organo == expected:
            right[label] += 1
            continue
        if result.organo is None:
            to_ogdau += 1
        else:
            wrong += 1
        misses.append(f"  expected {label:<7} got {result.organo or 'OGDAU':<7} {subject!r}: {result.reason}")
    per_mail_ms = (time.perf_counter() - start) / max(len(items), 1) * 1e3
    accuracy = sum(right.values()) / max(len(items), 1)
    print(
        f"== {name}: {sum(right.values())}/{len(items)} = {accuracy:.1%} right, {to_ogdau} to OGDAU, "
        f"{wrong} to a wrong organo ({per_mail_ms:.3f} ms/mail)"
    )
    print("  " + "  ".join(f"{label} {right[label]}/{total[label]}" for label in sorted(total)))
    if show_misses and misses:
        print("\n".join(misses))
    return accuracy, wrong


def cost(organos: tuple[OrganoTopics, ...], model: Predictor) -> None:
    """Print the CPU time per consulta of the rules and of rules + model (best of 7 passes)."""
    from routing.classify import normalize

    rows = [(row["subject"], row["text"]) for row in packaged_rows(LABELLED_SET)]
    shown = []
    for name, chosen in (("rules", None), ("rules + model", model)):
        best = float("inf")
        for _ in range(7):
            normalize.cache_clear()  # a stream of new mails, not the same texts again
            start = time.process_time()
            for subject, text in rows:
                classify(subject, text, organos, model=chosen)
            best = min(best, time.process_time() - start)
        shown.append(f"{name} {best / len(rows) * 1e6:.0f} us")
    print(f"== CPU per consulta ({len(rows)} consultas, best of 7): " + ", ".join(shown))


def correction_check(organos: tuple[OrganoTopics, ...], base: Iterable[Example]) -> bool:
    """Print the next similar consulta's route before and after one correction; True if it changed."""
    examples = list(base)
    before_model = train_model(examples)
    first = classify(*CORRECTED, organos, model=before_model)
    before = classify(*NEXT_SIMILAR, organos, model=before_model)
    after_model = train_model([*examples, Example(*CORRECTED, CORRECTED_TO, CORRECTION_WEIGHT)])
    after = classify(*NEXT_SIMILAR, organos, model=after_model)
    print(f"== correction: {CORRECTED[0]!r} routed to {first.organo or 'OGDAU'}, corrected to {CORRECTED_TO}")
    print(f"  next similar {NEXT_SIMILAR[0]!r}: before {before.organo or 'OGDAU'} ({before.reason})")
    print(f"  after retrain: {after.organo or 'OGDAU'} ({after.reason})")
    return before.organo != after.organo and after.organo == CORRECTED_TO


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registry", type=Path, default=ROOT / "docs/red.example.yaml")
    parser.add_argument("--corpus", type=Path, help="a folder written by gen_corpus.py")
    parser.add_argument("--show-misses", action="store_true", help="list every miss with its reason")
    args = parser.parse_args(argv)
    organos = load_registry_file(args.registry).organo_topics()
    base = builtin_examples(organos)
    start = time.perf_counter()
    model = train_model(base)
    print(f"model trained on {len(base)} examples in {time.perf_counter() - start:.2f} s")
    items = heldout_items()
    evaluate("held-out third, rules alone", items, organos, None, show_misses=False)
    accuracy, wrong = evaluate(
        "held-out third, rules + model", items, organos, model, show_misses=args.show_misses
    )
    if args.corpus:
        evaluate(f"gen_corpus {args.corpus}", load_corpus(args.corpus), organos, model, show_misses=False)
    cost(organos, model)
    changed = correction_check(organos, base)
    target = accuracy >= 0.95 and wrong == 0
    print(f"target (>= 95 % right, 0 to a wrong organo): {'met' if target else 'NOT met'}")
    print(f"correction changes the next similar consulta's route: {'yes' if changed else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
