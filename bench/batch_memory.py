"""Peak RSS of the Maildir intake on mails with large attachments, with and without the byte bound.

Usage::

    .venv/bin/python bench/batch_memory.py --mails 60 --attachment-kb 2048

For each byte budget (``intake.batching.MAX_BATCH_BYTES``, and one so large that only the mail count
bounds a batch, as before the byte bound) a fresh process links the same mails into a Maildir,
runs ``poll_maildir_once`` (200 mails per batch at most, the Maildir default) on a throwaway
PostgreSQL database and reports its peak RSS and the number of batches. Each mail is a complete
consulta with one PDF attachment of random bytes (base64 makes it ~4/3 larger).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_intake import throwaway_database
from intake.batching import MAX_BATCH_BYTES

UNBOUNDED = 1 << 40


def citizen_mail(n: int, attachment_bytes: int) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Ciudadano {n} <ciudadano{n}@example.pe>"
    mail["To"] = "consultas@mef.gob.pe"
    mail["Subject"] = f"Consulta {n} sobre el formato 12-B"
    mail["Message-ID"] = f"<memoria-{n}@example.pe>"
    mail.set_content(
        "Nombres y apellidos: José Pérez Quispe\nDNI: 45678912\nTeléfono: 987654321\n"
        f"Correo: ciudadano{n}@example.pe\n\n¿Cómo registro el formato 12-B número {n}?\n"
    )
    parsed = message_from_bytes(mail.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    parsed.add_attachment(
        os.urandom(attachment_bytes), maintype="application", subtype="pdf", filename="anexo.pdf"
    )
    return parsed.as_bytes()


def measure(corpus: Path, max_bytes: int) -> dict[str, float]:
    """In this (fresh) process: poll the corpus once with ``max_bytes``; peak RSS and batches."""
    from consultas.clock import SystemClock
    from consultas.context import ServiceConfig
    from consultas.db import open_database
    from consultas.settings import load_settings
    from intake import maildir_source
    from intake.maildir_source import Maildir, poll_maildir_once

    batches = 0
    process_batch = maildir_source._process_batch

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal batches
        batches += 1
        return process_batch(*args, **kwargs)  # type: ignore[arg-type]

    maildir_source._process_batch = counting  # type: ignore[assignment]
    with throwaway_database(keep=False) as url, tempfile.TemporaryDirectory() as var:
        maildir = Maildir(Path(var) / "maildir")
        for entry in os.scandir(corpus):
            os.link(entry.path, maildir.new / entry.name)
        settings = load_settings(
            var_dir=Path(var), database_url=url, secret_key="bench", auto_reply_cap_per_day=1_000_000
        )
        engine, sessions = open_database(settings.resolved_database_url)
        config = ServiceConfig.from_settings(settings)
        counts = poll_maildir_once(
            sessions,
            maildir,
            mailbox=config.mailbox,
            config=config,
            clock=SystemClock(),
            batch_max_bytes=max_bytes,
        )
        engine.dispose()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"processed": counts.processed, "batches": batches, "peak_rss_mb": round(peak_mb)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mails", type=int, default=60)
    parser.add_argument("--attachment-kb", type=int, default=2048)
    parser.add_argument("--measure", nargs=2, metavar=("CORPUS", "MAX_BYTES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), int(args.measure[1]))))
        return 0
    with tempfile.TemporaryDirectory() as corpus_dir:
        corpus = Path(corpus_dir)
        for n in range(args.mails):
            (corpus / f"{n:06d}.eml").write_bytes(citizen_mail(n, args.attachment_kb * 1024))
        total_mb = sum(p.stat().st_size for p in corpus.iterdir()) / 2**20
        print(f"{args.mails} mails, {total_mb:.0f} MB of raw mail")
        for label, max_bytes in (("byte bound 8 MiB", MAX_BATCH_BYTES), ("mail count only", UNBOUNDED)):
            command = [sys.executable, __file__, "--measure", str(corpus), str(max_bytes)]
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            batches, processed, peak = result["batches"], result["processed"], result["peak_rss_mb"]
            print(f"{label}: {batches} batches, {processed} processed, peak RSS {peak} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
