"""The HTML pages: the Anexo N° 1 form at ``/``, its result, and the status page at ``/estado``.

Rendered on the server and complete without JavaScript. The form carries a one-time signed
token (CSRF, bound to a cookie) whose id is the submission's key: a double submit shows the same
consulta. A filled honeypot field or a bad token registers nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from consultas.mailer import fecha
from consultas.models import ConsultaStatus
from consultas.numbering import NUMBER_PATTERN
from web import store
from web.context import WebContext
from web.fields import DOCUMENT_LABELS, KEYS, MAX_CHARS, Checked
from web.http import client_of, read_body
from web.security import CSRF_COOKIE, check_token, issue_token, new_browser_secret
from web.submit import Invalid, RateLimited, submit

TEMPLATES = Path(__file__).parent / "templates"
#: The honeypot input: hidden from people (and assistive technology), filled by naive bots.
HONEYPOT = "sitio_web"

STATUS_TEXT = {
    ConsultaStatus.SUBSANACION: "En subsanación: faltan datos para registrarla.",
    ConsultaStatus.ADMITIDA: "Registrada: pronto será derivada al área que la atenderá.",
    ConsultaStatus.ASIGNADA: "En atención: el área competente está preparando la respuesta.",
    ConsultaStatus.RESPONDIDA: "Respondida: le enviamos la respuesta por correo electrónico.",
    ConsultaStatus.ARCHIVADA: "Archivada.",
}
FORM_EXPIRED = (
    "La página del formulario caducó o no se pudo verificar. Revise sus datos y pulse "
    "«Registrar consulta» de nuevo."
)
NOT_FOUND = "No encontramos una consulta con ese número y ese documento de identidad. Revise ambos datos."

_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
_env.filters["fecha"] = fecha
_env.globals.update(DOCUMENT_LABELS=DOCUMENT_LABELS, MAX_CHARS=MAX_CHARS, STATUS_TEXT=STATUS_TEXT)


def render(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(template).render(**context), status_code=status_code)


def _ctx(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.web
    return ctx


def _browser(request: Request) -> tuple[str, bool]:
    """This browser's CSRF secret, and whether it is new (to be set as a cookie)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if len(current) == 32 and current.isalnum():
        return current, False
    return new_browser_secret(), True


def _with_cookie(response: Response, request: Request, secret: str, fresh: bool) -> Response:
    if fresh:
        response.set_cookie(
            CSRF_COOKIE,
            secret,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
    return response


async def _form_page(
    request: Request,
    *,
    values: dict[str, str] | None = None,
    checked: Checked | None = None,
    token: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    ctx = _ctx(request)
    secret, fresh = _browser(request)
    if token is None or fresh:
        token = issue_token(ctx.csrf_key, secret, now=ctx.seconds())
    temas = await run_in_threadpool(ctx.temas)
    page = render(
        "form.html",
        status_code,
        values=values or {},
        errors=checked.errors if checked else {},
        matches=checked.entity_matches if checked else [],
        temas=temas,
        token=token,
        notice=notice,
        honeypot=HONEYPOT,
        entity_search=ctx.entities is not None,
    )
    return _with_cookie(page, request, secret, fresh)


async def form(request: Request) -> Response:
    return await _form_page(request)


def _fields(body: bytes) -> dict[str, str]:
    """The urlencoded form; a repeated name keeps its first value (nothing here is multi-valued)."""
    fields: dict[str, str] = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=40):
        fields.setdefault(name, value)
    return fields


def rate_limited_page(retry_after_s: int) -> Response:
    minutes = max(1, round(retry_after_s / 60))
    page = render("limite.html", 429, minutes=minutes)
    page.headers["Retry-After"] = str(retry_after_s)
    return page


async def register(request: Request) -> Response:
    ctx = _ctx(request)
    fields = _fields(await read_body(request))
    values: dict[str, str] = {key: fields[key][: MAX_CHARS.get(key, 8) * 2] for key in KEYS if key in fields}
    if fields.get(HONEYPOT):
        return render("rechazado.html", 400)
    form_id = check_token(
        ctx.csrf_key, fields.get("token", ""), request.cookies.get(CSRF_COOKIE), now=ctx.seconds()
    )
    if form_id is None:
        return await _form_page(request, values=values, notice=FORM_EXPIRED, status_code=400)
    outcome = await submit(ctx, fields, key=f"form:{form_id}", client=client_of(request, ctx))
    if isinstance(outcome, RateLimited):
        return rate_limited_page(outcome.retry_after_s)
    if isinstance(outcome, Invalid):
        return await _form_page(
            request, values=values, checked=outcome.checked, token=fields["token"], status_code=422
        )
    return render(
        "resultado.html",
        registered=outcome,
        status_url=ctx.config.status_url(outcome.number),
    )


async def estado(request: Request) -> Response:
    ctx = _ctx(request)
    secret, fresh = _browser(request)
    number = request.query_params.get("numero", "")[:32]
    token = issue_token(ctx.csrf_key, secret, now=ctx.seconds())
    return _with_cookie(render("estado.html", numero=number, token=token), request, secret, fresh)


async def estado_lookup(request: Request) -> Response:
    ctx = _ctx(request)
    fields = _fields(await read_body(request))
    number = fields.get("numero", "").strip()[:32]
    document = fields.get("documento", "").strip()[:20]
    secret, fresh = _browser(request)
    token = issue_token(ctx.csrf_key, secret, now=ctx.seconds())
    if (
        check_token(
            ctx.csrf_key, fields.get("token", ""), request.cookies.get(CSRF_COOKIE), now=ctx.seconds()
        )
        is None
    ):
        page = render("estado.html", 400, numero=number, token=token, notice=FORM_EXPIRED)
        return _with_cookie(page, request, secret, fresh)
    retry = ctx.lookups.hit(client_of(request, ctx))
    if retry is not None:
        return rate_limited_page(retry)
    errors = {}
    if not NUMBER_PATTERN.fullmatch(number):
        errors["numero"] = (
            "Escriba el número de consulta como figura en su constancia, por ejemplo CONS-2025-000123."
        )
    if not document:
        errors["documento"] = "Escriba el número de su documento de identidad."
    if errors:
        page = render("estado.html", 422, numero=number, documento=document, token=token, errors=errors)
        return _with_cookie(page, request, secret, fresh)
    found = await run_in_threadpool(store.status, ctx.sessions, number, document, config=ctx.config)
    if found is None:
        page = render("estado.html", 404, numero=number, token=token, notice=NOT_FOUND)
        return _with_cookie(page, request, secret, fresh)
    return _with_cookie(
        render("estado.html", numero=number, token=token, found=found), request, secret, fresh
    )


routes = [
    Route("/", form, methods=["GET"]),
    Route("/", register, methods=["POST"]),
    Route("/estado", estado, methods=["GET"]),
    Route("/estado", estado_lookup, methods=["POST"]),
]
