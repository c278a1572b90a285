"""One submission, from the form or the API: rate limits, checks, admission once per key."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from web import store
from web.context import WebContext
from web.fields import Checked, check_submission


@dataclass(frozen=True)
class RateLimited:
    retry_after_s: int


@dataclass(frozen=True)
class Invalid:
    checked: Checked


Outcome = store.Registered | RateLimited | Invalid


def _email_key(email: str) -> str:
    # The limiter's keys are never logged, but a digest keeps addresses out of memory dumps too.
    return hashlib.sha256(email.encode()).hexdigest()


async def submit(
    ctx: WebContext, raw: Mapping[str, object], *, key: str, client: str, may_repeat: bool = True
) -> Outcome:
    """Register ``raw`` under ``key`` unless limited or invalid; a key seen before returns its consulta.

    ``may_repeat=False``: the key is fresh (an API request without Idempotency-Key), not looked up
    before the admission's own check.
    """
    received = ctx.clock.now()  # the arrival instant decides the day it counts as presented (5.1)
    if may_repeat:
        earlier = await run_in_threadpool(store.previous, ctx.sessions, key, config=ctx.config)
        if earlier is not None:
            return earlier
    retry = ctx.by_address.hit(client)
    if retry is not None:
        return RateLimited(retry)
    temas = await run_in_threadpool(ctx.temas)
    checked = check_submission(raw, temas=temas, entities=ctx.entities)
    if not checked.valid:
        return Invalid(checked)
    retry = ctx.by_email.hit(_email_key(checked.values["email"]))
    if retry is not None:
        return RateLimited(retry)
    async with ctx.registrations():
        registered = await run_in_threadpool(
            store.register,
            ctx.sessions,
            checked.requisitos(),
            key=key,
            tema=checked.values.get("tema"),
            config=ctx.config,
            now=received,
        )
    if ctx.on_committed is not None and registered.outbox_ids:
        await run_in_threadpool(ctx.on_committed, list(registered.outbox_ids))
    return registered
