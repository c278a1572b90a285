"""Every module that declares actors. Importing this one declares them all: a worker process, the
embedded workers and the scheduler do, so that each actor exists on the configured broker (which
re-binds actors declared before it was configured: ``workers.broker``)."""

from workers import classifier, digest, mail, reminders, reports, retention, sweep

ACTOR_MODULES = (classifier, digest, mail, reminders, reports, retention, sweep)
