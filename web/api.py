"""The public API under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``).

- ``GET /temas`` -> ``[{"code", "name"}]``
- ``POST /consultas`` -> 201 ``{"number", "status", "presented", "due", "status_url"}``, or 422
  ``{"missing", "invalid", "errors"}`` (keys of the request); an ``Idempotency-Key`` header makes a
  repeated request return the same consulta.
- ``GET /consultas/{number}?document_number=`` -> 200 ``{"number", "status", "presented", "due",
  "organo", "answered_on", "answer"}``, or 404 with one body for unknown and mismatched alike.
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from web import store
from web.context import WebContext
from web.fields import KEYS
from web.http import client_of, read_body
from web.submit import Invalid, RateLimited, submit

#: The one answer for an unknown number and a wrong document alike.
NOT_FOUND_BODY = {"error": "not_found", "message": "No se encontró una consulta con ese número y documento."}
MAX_IDEMPOTENCY_KEY = 200


class Tema(BaseModel):
    code: str
    name: str


class ConsultaIn(BaseModel):
    """A consulta as Anexo N° 1 asks for it (the schema documents the body; checks are the form's)."""

    represents_entity: bool
    document_type: Literal["DNI", "CE", "PASAPORTE"]
    document_number: str = Field(max_length=20)
    names: str = Field(max_length=80)
    paternal_surname: str = Field(max_length=80)
    maternal_surname: str | None = Field(None, max_length=80)
    email: str = Field(max_length=254)
    entity_ruc: str | None = Field(None, max_length=20, description="required when represents_entity")
    entity_name: str | None = Field(None, max_length=300)
    phone: str = Field(max_length=30)
    tema: str = Field(max_length=32, description="a code from GET /api/v1/temas")
    question: str = Field(max_length=4000)


class ConsultaOut(BaseModel):
    number: str
    status: str
    presented: date
    due: date
    status_url: str


class Problems(BaseModel):
    missing: list[str]
    invalid: list[str]
    errors: dict[str, str]


class StatusOut(BaseModel):
    number: str
    status: str
    presented: date | None
    due: date | None
    organo: str | None
    answered_on: date | None
    answer: str | None


class ErrorOut(BaseModel):
    error: str
    message: str


def _ctx(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.web
    return ctx


def _problems(missing: list[str], invalid: list[str], errors: dict[str, str]) -> JSONResponse:
    return JSONResponse({"missing": missing, "invalid": invalid, "errors": errors}, status_code=422)


def _limited(retry_after_s: int) -> JSONResponse:
    return JSONResponse(
        {"error": "rate_limited", "message": "Demasiadas solicitudes: inténtelo más tarde."},
        status_code=429,
        headers={"Retry-After": str(retry_after_s)},
    )


def create_api(ctx: WebContext) -> FastAPI:
    api = FastAPI(
        title="Consultas MEF: API pública",
        version="1",
        openapi_url="/openapi.json",
        docs_url=None,  # the interactive docs load scripts from a CDN: none here
        redoc_url=None,
        servers=[{"url": "/api/v1"}],
    )
    api.state.web = ctx

    @api.get("/temas", response_model=list[Tema])
    async def temas(request: Request) -> list[Tema]:
        found = await run_in_threadpool(_ctx(request).temas)
        return [Tema(code=code, name=name) for code, name in found.items()]

    @api.post(
        "/consultas",
        status_code=201,
        response_model=ConsultaOut,
        responses={422: {"model": Problems}, 429: {"model": ErrorOut}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ConsultaIn.model_json_schema()}},
            }
        },
    )
    async def create_consulta(
        request: Request,
        idempotency_key: Annotated[str | None, Header(description="repeats return the same consulta")] = None,
    ) -> Any:
        ctx = _ctx(request)
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            return _problems(
                [], ["Idempotency-Key"], {"Idempotency-Key": "Debe tener de 1 a 200 caracteres."}
            )
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            # Only JSON: an HTML form on another site cannot post here as a simple request.
            return JSONResponse(
                {"error": "unsupported_media_type", "message": "Envíe el cuerpo como application/json."},
                status_code=415,
            )
        try:
            body = json.loads(await read_body(request) or b"null")
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return _problems([], ["body"], {"body": "El cuerpo debe ser un objeto JSON."})
        raw = {key: body.get(key) for key in KEYS}
        key = f"api:{idempotency_key}" if idempotency_key else f"api-once:{uuid.uuid4().hex}"
        client = client_of(request, ctx)
        outcome = await submit(ctx, raw, key=key, client=client, may_repeat=idempotency_key is not None)
        if isinstance(outcome, RateLimited):
            return _limited(outcome.retry_after_s)
        if isinstance(outcome, Invalid):
            checked = outcome.checked
            return _problems(checked.missing, checked.invalid, checked.errors)
        return JSONResponse(
            {
                "number": outcome.number,
                "status": outcome.status.value,
                "presented": outcome.presented_on.isoformat(),
                "due": outcome.due_on.isoformat(),
                "status_url": ctx.config.status_url(outcome.number),
            },
            status_code=201,  # a replay answers as the first request did
        )

    @api.get(
        "/consultas/{number}",
        response_model=StatusOut,
        responses={404: {"model": ErrorOut}, 429: {"model": ErrorOut}},
    )
    async def consulta_status(
        request: Request, number: str, document_number: Annotated[str, Query()] = ""
    ) -> Any:
        ctx = _ctx(request)
        retry = ctx.lookups.hit(client_of(request, ctx))
        if retry is not None:
            return _limited(retry)
        found = await run_in_threadpool(
            store.status, ctx.sessions, number[:32], document_number[:20], config=ctx.config
        )
        if found is None:
            return JSONResponse(NOT_FOUND_BODY, status_code=404)
        return {
            "number": found.number,
            "status": found.status.value,
            "presented": found.presented_on.isoformat() if found.presented_on else None,
            "due": found.due_on.isoformat() if found.due_on else None,
            "organo": found.organo,
            "answered_on": found.answered_on.isoformat() if found.answered_on else None,
            "answer": found.answer,
        }

    return api
