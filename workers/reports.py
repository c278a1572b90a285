"""The quarterly report per órgano that OGDAU sends to OGSU (directive 6.3).

``build_report`` aggregates in SQL; ``report_csv`` / ``report_text`` format it; ``queue_report``
mails it (CSV attached) to the OGSU address (CONSULTAS_OGSU_EMAIL) with OGDAU in Cc;
``send_quarterly_report`` is the actor the scheduler enqueues from the first working day after
the quarter.

Columns (one row per órgano; consultas without órgano — administrativa — under "OGDAU"; the
órgano is the consulta's current one, after any derivación). Only numbered consultas count
(subsanación and archivada ones never were presented). Quarter = [start, end], Lima dates.
- recibidas: ``presented_on`` within the quarter.
- respondidas_en_plazo: ``answered_on`` within the quarter and ``answered_on <= due_on``.
- respondidas_fuera_de_plazo: ``answered_on`` within the quarter and ``answered_on > due_on``.
- pendientes: presented on or before the quarter's end and not answered by it
  (``answered_on`` empty or after ``end``): open at the close of the quarter.
- vencidas: the pendientes whose ``due_on`` is before the quarter's end (overdue at its close).
- promedio_dias_habiles: mean working days from ``presented_on`` to ``answered_on``
  (``WorkingCalendar.working_days_between``: 0 = answered the day it was presented) over the
  consultas answered within the quarter; empty when none.
Figures depend only on dates, so re-running a past quarter gives the same report.

Efficiency: the average groups by (órgano, presented_on, answered_on) in SQL and applies the
calendar once per distinct pair (a few thousand per quarter, whatever the row count).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from consultas.calendar import WorkingCalendar
from consultas.context import ServiceConfig
from consultas.errors import ConfigurationError
from consultas.mailer import Envelope, OutgoingAttachment
from consultas.models import Consulta, Organo, Outbox
from consultas.outbox import enqueue_mail
from workers.broker import actor
from workers.reminders import FOLLOWUP_QUEUE, serialize_runs
from workers.runtime import get_runtime

logger = logging.getLogger(__name__)

REPORT_TEMPLATE = "reporte_trimestral"
OGDAU_LABEL = "OGDAU"
OGDAU_NAME = "Oficina de Gestión Documental y Atención al Usuario"
#: The report is still sent (caught up) this many working days after its first sending day.
CATCH_UP_WORKING_DAYS = 10
CSV_COLUMNS = (
    "organo",
    "nombre",
    "recibidas",
    "respondidas_en_plazo",
    "respondidas_fuera_de_plazo",
    "pendientes",
    "vencidas",
    "promedio_dias_habiles",
)
_QUARTER = re.compile(r"^(\d{4})-?Q([1-4])$", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Quarter:
    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> Quarter:
        """Read "2024Q4" (or "2024-Q4")."""
        match = _QUARTER.match(text.strip())
        if match is None:
            raise ConfigurationError(f"--quarter: expected YYYYQn, e.g. 2024Q4 (got {text!r})")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def containing(cls, day: date) -> Quarter:
        return cls(day.year, (day.month - 1) // 3 + 1)

    @property
    def start(self) -> date:
        return date(self.year, 3 * self.number - 2, 1)

    @property
    def end(self) -> date:
        following = self.next()
        return following.start - timedelta(days=1)

    def next(self) -> Quarter:
        return Quarter(self.year + 1, 1) if self.number == 4 else Quarter(self.year, self.number + 1)

    def previous(self) -> Quarter:
        return Quarter(self.year - 1, 4) if self.number == 1 else Quarter(self.year, self.number - 1)

    def __str__(self) -> str:
        return f"{self.year}Q{self.number}"


@dataclass(frozen=True)
class ReportLine:
    organo: str
    nombre: str
    recibidas: int
    respondidas_en_plazo: int
    respondidas_fuera_de_plazo: int
    pendientes: int
    vencidas: int
    promedio_dias_habiles: float | None


@dataclass(frozen=True)
class QuarterlyReport:
    trimestre: str
    desde: str
    hasta: str
    lineas: list[ReportLine]
    total: ReportLine

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def first_sending_day(quarter: Quarter, calendar: WorkingCalendar) -> date:
    """The first working day after the quarter's end."""
    return calendar.next_working_day(quarter.end)


def build_report(session: Session, *, config: ServiceConfig, quarter: Quarter) -> QuarterlyReport:
    """Aggregate the quarter per órgano (see the module docstring for each column)."""
    start, end = quarter.start, quarter.end
    organo_key = func.coalesce(Consulta.organo_code, OGDAU_LABEL)
    numbered = Consulta.number.is_not(None)
    received = and_(Consulta.presented_on >= start, Consulta.presented_on <= end)
    answered = and_(Consulta.answered_on >= start, Consulta.answered_on <= end)
    pending = and_(
        Consulta.presented_on <= end, or_(Consulta.answered_on.is_(None), Consulta.answered_on > end)
    )

    def count_if(condition: Any) -> Any:
        return func.sum(case((condition, 1), else_=0))

    counts = session.execute(
        select(
            organo_key,
            count_if(received),
            count_if(and_(answered, Consulta.answered_on <= Consulta.due_on)),
            count_if(and_(answered, Consulta.answered_on > Consulta.due_on)),
            count_if(pending),
            count_if(and_(pending, Consulta.due_on < end)),
        )
        .where(numbered, or_(received, answered, pending))
        .group_by(organo_key)
    ).all()

    days_sum: dict[str, int] = defaultdict(int)
    days_n: dict[str, int] = defaultdict(int)
    calendar = config.calendar
    pairs = session.execute(
        select(organo_key, Consulta.presented_on, Consulta.answered_on, func.count())
        .where(numbered, answered, Consulta.presented_on.is_not(None))
        .group_by(organo_key, Consulta.presented_on, Consulta.answered_on)
    )
    for organo, presented_on, answered_on, n in pairs:
        assert presented_on is not None and answered_on is not None  # both filtered on
        days_sum[organo] += calendar.working_days_between(presented_on, answered_on) * n
        days_n[organo] += n

    names: dict[str, str] = {code: name for code, name in session.execute(select(Organo.code, Organo.name))}
    lines = [
        ReportLine(
            organo=organo,
            nombre=names.get(organo, OGDAU_NAME if organo == OGDAU_LABEL else organo),
            recibidas=int(rec or 0),
            respondidas_en_plazo=int(on_time or 0),
            respondidas_fuera_de_plazo=int(late or 0),
            pendientes=int(pend or 0),
            vencidas=int(overdue or 0),
            promedio_dias_habiles=_mean(days_sum[organo], days_n[organo]),
        )
        for organo, rec, on_time, late, pend, overdue in sorted(counts, key=lambda row: str(row[0]))
    ]
    total = ReportLine(
        organo="TOTAL",
        nombre="Total",
        recibidas=sum(line.recibidas for line in lines),
        respondidas_en_plazo=sum(line.respondidas_en_plazo for line in lines),
        respondidas_fuera_de_plazo=sum(line.respondidas_fuera_de_plazo for line in lines),
        pendientes=sum(line.pendientes for line in lines),
        vencidas=sum(line.vencidas for line in lines),
        promedio_dias_habiles=_mean(sum(days_sum.values()), sum(days_n.values())),
    )
    return QuarterlyReport(str(quarter), start.isoformat(), end.isoformat(), lines, total)


def _mean(total: int, n: int) -> float | None:
    return round(total / n, 2) if n else None


def report_csv(report: QuarterlyReport) -> str:
    """The report as CSV (comma-separated, header row, a TOTAL row last, decimal point)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for line in [*report.lineas, report.total]:
        row = asdict(line)
        average = row["promedio_dias_habiles"]
        row["promedio_dias_habiles"] = "" if average is None else f"{average:.2f}"
        writer.writerow([row[column] for column in CSV_COLUMNS])
    return buffer.getvalue()


def report_text(report: QuarterlyReport) -> str:
    """The report as an aligned text table (for the terminal)."""
    header = ("Órgano", "Recibidas", "En plazo", "Fuera plazo", "Pendientes", "Vencidas", "Prom. días háb.")
    rows = [
        (
            line.organo,
            str(line.recibidas),
            str(line.respondidas_en_plazo),
            str(line.respondidas_fuera_de_plazo),
            str(line.pendientes),
            str(line.vencidas),
            "-" if line.promedio_dias_habiles is None else f"{line.promedio_dias_habiles:.2f}",
        )
        for line in [*report.lineas, report.total]
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    out = [f"Reporte trimestral {report.trimestre} ({report.desde} a {report.hasta})", ""]
    out.extend(_aligned(cells, widths) for cells in [header, *rows])
    return "\n".join(out) + "\n"


def _aligned(cells: tuple[str, ...], widths: list[int]) -> str:
    """First column left-aligned, the figures right-aligned."""
    first, *rest = zip(cells, widths, strict=True)
    return "  ".join([first[0].ljust(first[1]), *(value.rjust(width) for value, width in rest)])


def report_key(quarter: Quarter) -> str:
    return f"reporte_trimestral:{quarter}"


def report_already_queued(session: Session, quarter: Quarter) -> bool:
    return session.scalar(select(Outbox.id).where(Outbox.idempotency_key == report_key(quarter))) is not None


def queue_report(
    session: Session, report: QuarterlyReport, *, config: ServiceConfig, now: datetime
) -> Outbox | None:
    """Mail the report, CSV attached, to OGSU with OGDAU in Cc (OGDAU alone without an OGSU address)."""
    to = [config.ogsu_email] if config.ogsu_email else [config.ogdau_email]
    cc = [config.ogdau_email] if config.ogsu_email else []
    attachment = OutgoingAttachment(
        filename=f"reporte_consultas_{report.trimestre}.csv",
        content_type="text/csv; charset=utf-8",  # mail previews show the accents right
        content=report_csv(report).encode("utf-8-sig"),  # BOM: Excel opens accents correctly
    )
    return enqueue_mail(
        session,
        template=REPORT_TEMPLATE,
        context=report.as_dict(),
        envelope=Envelope(to=to, cc=cc, attachments=[attachment]),
        identity=config.identity,
        idempotency_key=report_key(Quarter.parse(report.trimestre)),
        now=now,
        automatic=False,
    )


def send_report_for(session: Session, *, config: ServiceConfig, quarter: Quarter, now: datetime) -> bool:
    """Queue ``quarter``'s report if its sending window is open at ``now`` and it was not sent."""
    calendar = config.calendar
    today = calendar.local(now).date()
    first = first_sending_day(quarter, calendar)
    last = calendar.add_working_days(first, CATCH_UP_WORKING_DAYS)
    if not (first <= today <= last) or not calendar.is_office_hours(now):
        return False
    serialize_runs(session, report_key(quarter))  # a concurrent run of the same quarter queues it first
    if report_already_queued(session, quarter):
        return False
    queue_report(session, build_report(session, config=config, quarter=quarter), config=config, now=now)
    return True


@actor(
    queue_name=FOLLOWUP_QUEUE,
    max_retries=3,
    min_backoff_ms=60_000,
    max_backoff_ms=10 * 60_000,
    time_limit_ms=10 * 60_000,
    max_age_ms=24 * 3_600_000,
)
def send_quarterly_report(quarter: str) -> None:
    """Queue the report of ``quarter`` ("2024Q4") once, from the first working day after it."""
    runtime = get_runtime()
    with runtime.sessions.begin() as session:
        queued = send_report_for(
            session, config=runtime.config, quarter=Quarter.parse(quarter), now=runtime.clock.now()
        )
    logger.info("quarterly report %s: %s", quarter, "queued" if queued else "nothing to do")
