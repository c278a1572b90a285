"""The ``consultas scheduler`` process: APScheduler 3 triggers that only enqueue actors.

It holds no logic and no state (STYLE 7): every actor re-reads the database and is idempotent, so
a missed or doubled trigger is harmless and the next one catches up.
- every ``SWEEP_INTERVAL_S`` seconds: ``sweep_outbox`` (re-enqueue due outbox rows, and the rows a dead
  worker had claimed: with ``CLAIM_TIMEOUT`` they are sent again within a minute);
- every 15 minutes, 08:30-16:30 Lima, Monday-Friday: ``run_reminders_job`` and
  ``send_daily_digest(today)``; the first tick of the day (08:30) sends the digest, later ticks
  find it queued (or catch it up if 08:30 was missed); the actors skip holidays themselves;
- 08:45 Lima, Monday-Friday: ``send_quarterly_report(previous quarter)``; the actor only acts
  from the first working day after the quarter, once, within its catch-up window;
- 02:30 Lima, every night: ``retrain_classifier`` (the day's corrections join the model).
- 03:00 Lima, every day: ``run_retention_job`` (anonymise what CONSULTAS_RETENTION_YEARS allows no more).
Run one scheduler per deployment (two would only enqueue harmless duplicates).
"""

from __future__ import annotations

import logging
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from consultas.calendar import WorkingCalendar
from consultas.clock import Clock
from consultas.errors import ConfigurationError
from consultas.settings import Settings
from workers.broker import configure_broker, send_hint

logger = logging.getLogger(__name__)

#: Seconds a trigger may fire late (process paused) and still run; later ones are skipped.
MISFIRE_GRACE_S = 10 * 60


def followup_tick(clock: Clock, calendar: WorkingCalendar) -> list[str]:
    """Enqueue the reminder run and today's digest; return what was enqueued (for logs and tests)."""
    from workers.digest import send_daily_digest
    from workers.reminders import run_reminders_job

    today = calendar.local(clock.now()).date()
    sent = []
    if send_hint(run_reminders_job):
        sent.append("run_reminders_job")
    if calendar.is_working_day(today) and send_hint(send_daily_digest, today.isoformat()):
        sent.append(f"send_daily_digest({today.isoformat()})")
    return sent


def quarterly_tick(clock: Clock, calendar: WorkingCalendar) -> list[str]:
    """Enqueue the previous quarter's report (the actor decides whether it is due)."""
    from workers.reports import Quarter, send_quarterly_report

    quarter = str(Quarter.containing(calendar.local(clock.now()).date()).previous())
    return [f"send_quarterly_report({quarter})"] if send_hint(send_quarterly_report, quarter) else []


#: The outbox sweep's period: a dead worker's claims expire after ``CLAIM_TIMEOUT`` (30 s), and the
#: next sweep hands their rows to a live worker, so they go out within a minute of the crash.
SWEEP_INTERVAL_S = 10


def outbox_tick() -> list[str]:
    """Enqueue the outbox sweep."""
    from workers.sweep import sweep_outbox

    return ["sweep_outbox"] if send_hint(sweep_outbox) else []


def classifier_tick() -> list[str]:
    """Enqueue the nightly retrain of the classifier."""
    from workers.classifier import retrain_classifier

    return ["retrain_classifier"] if send_hint(retrain_classifier) else []


def retention_tick() -> list[str]:
    """Enqueue the daily retention run (CONSULTAS_RETENTION_YEARS)."""
    from workers.retention import run_retention_job

    return ["run_retention_job"] if send_hint(run_retention_job) else []


def build_scheduler(calendar: WorkingCalendar, clock: Clock, *, background: bool = False) -> BaseScheduler:
    """A scheduler (blocking for the process, background for embedded use) with our triggers."""
    tz = calendar.tz
    options: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_S}
    scheduler: BaseScheduler = (BackgroundScheduler if background else BlockingScheduler)(timezone=tz)
    sweep = IntervalTrigger(seconds=SWEEP_INTERVAL_S, timezone=tz)
    scheduler.add_job(outbox_tick, sweep, id="outbox_sweep", **options)
    followup = (clock, calendar)
    scheduler.add_job(
        followup_tick,
        CronTrigger(day_of_week="mon-fri", hour="8", minute="30,45", timezone=tz),
        args=followup,
        id="followup_opening",
        **options,
    )
    scheduler.add_job(
        followup_tick,
        CronTrigger(day_of_week="mon-fri", hour="9-15", minute="*/15", timezone=tz),
        args=followup,
        id="followup_day",
        **options,
    )
    scheduler.add_job(
        followup_tick,
        CronTrigger(day_of_week="mon-fri", hour="16", minute="0,15,30", timezone=tz),
        args=followup,
        id="followup_closing",
        **options,
    )
    scheduler.add_job(
        quarterly_tick,
        CronTrigger(day_of_week="mon-fri", hour="8", minute="45", timezone=tz),
        args=followup,
        id="quarterly_report",
        **options,
    )
    scheduler.add_job(
        classifier_tick, CronTrigger(hour="2", minute="30", timezone=tz), id="classifier_retrain", **options
    )
    scheduler.add_job(
        retention_tick, CronTrigger(hour="3", minute="0", timezone=tz), id="retention", **options
    )
    return scheduler


def run_scheduler(settings: Settings, clock: Clock) -> None:
    """Run the scheduler process until interrupted (needs a shared broker: Redis)."""
    if settings.broker_url == "memory":
        raise ConfigurationError(
            "CONSULTAS_BROKER_URL: the scheduler process needs a shared broker (redis://...); "
            "with 'memory' the in-process workers must run the scheduler themselves"
        )
    import workers.actors  # noqa: F401  (declares the actors the triggers enqueue)

    configure_broker(settings.broker_url)
    from consultas.context import ServiceConfig

    scheduler = build_scheduler(ServiceConfig.from_settings(settings).calendar, clock)
    logger.info("scheduler started: %s", ", ".join(job.id for job in scheduler.get_jobs()))
    scheduler.start()
