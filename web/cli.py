"""``consultas web [--workers N]``: the web app alone, under uvicorn (production).

The workers run elsewhere (``consultas worker``); new confirmation mails are hinted to them
through the broker, as ``consultas poll`` and ``consultas bot`` do.
"""

from __future__ import annotations

import argparse
from typing import Any

from starlette.types import ASGIApp

from consultas.cliargs import Once


def register(subparsers: Any) -> None:
    web = subparsers.add_parser(
        "web",
        help="serve only the web form, status page and API (uvicorn; CONSULTAS_WEB_HOST/PORT)",
        description="The Anexo N° 1 form at /, the status page at /estado and the API at /api/v1.",
    )
    web.add_argument(
        "--workers",
        action=Once,
        type=int,
        default=1,
        metavar="N",
        help="uvicorn worker processes (default 1)",
    )
    web.set_defaults(handler=_web)


def app_from_environment() -> ASGIApp:
    """The web app for the CONSULTAS_* settings (each uvicorn worker process builds its own)."""
    from consultas.clock import SystemClock
    from consultas.context import ServiceConfig
    from consultas.db import open_database
    from consultas.settings import load_settings
    from web.app import create_app
    from web.context import WebContext
    from workers.mail import hint_for_separate_workers

    settings = load_settings()
    _, sessions = open_database(settings.resolved_database_url)
    config = ServiceConfig.from_settings(settings)
    hint = hint_for_separate_workers(settings.broker_url)
    return create_app(WebContext.build(settings, sessions, config, SystemClock(), on_committed=hint))


def _web(args: argparse.Namespace) -> int:
    import uvicorn

    from consultas.errors import ConfigurationError
    from consultas.settings import load_settings
    from web.server import uvicorn_options

    if args.workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    settings = load_settings()
    app_from_environment()  # a wrong setting is one line here, not a traceback in each worker
    uvicorn.run(
        "web.cli:app_from_environment",
        factory=True,
        workers=args.workers,
        **uvicorn_options(host=settings.web_host, port=settings.web_port),
    )
    return 0
