"""The Anexo N° 1 form as one ConversationHandler.

Each step validates its answer at once (intake's validators, the same as mail's) and re-asks
with the reason; the draft lives in ``chat_data["draft"]`` (PTB persistence keeps it across
restarts); confirmation goes through ``bot.store.admit_flow`` (``routing.admission``). The state
diagram is ``bot/conversation.mmd``; ``/estado`` is ``bot.estado``; wiring (persistence, flood
control, errors) is ``bot.app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import uuid
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot import store, texts
from bot.draft import (
    ADMINISTRATIVA,
    REQUISITO_STEPS,
    TYPED_STEPS,
    Step,
    accept_text,
    applies,
    next_step,
    reopen,
    set_entidad,
    set_tipo_documento,
    summary_rows,
    to_requisitos,
)
from consultas.clock import Clock
from consultas.context import ServiceConfig
from consultas.requisitos import check_requisitos

logger = logging.getLogger(__name__)

Context = ContextTypes.DEFAULT_TYPE
#: The summary shows at most this much of the question (a Telegram message holds 4096).
SUMMARY_QUESTION_CHARS = 1500
#: An idle form is closed after this long (seconds); ``build_application`` can change it.
DEFAULT_CONVERSATION_TIMEOUT_S = 30 * 60


class State(StrEnum):
    """Where a chat is in the form; values are stable (persisted) and match ``Step`` values."""

    ENTIDAD = "entidad"
    TIPO_DOCUMENTO = "tipo_documento"
    NUMERO_DOCUMENTO = "numero_documento"
    NOMBRES = "nombres"
    APELLIDO_PATERNO = "apellido_paterno"
    APELLIDO_MATERNO = "apellido_materno"
    CORREO = "correo"
    RUC = "ruc"
    RAZON_SOCIAL = "razon_social"
    TELEFONO = "telefono"
    TEMA = "tema"
    CONSULTA = "consulta"
    RESUMEN = "resumen"
    CORREGIR = "corregir"


@dataclass(frozen=True)
class Services:
    """What the handlers need besides Telegram: the database, the use-case config and the clock."""

    sessions: sessionmaker[Session]
    config: ServiceConfig
    clock: Clock
    #: Told the outbox rows an admission committed (the confirmation, the routed mail), so the
    #: workers send them at once; None leaves them to the outbox sweep.
    on_committed: Callable[[list[int]], object] | None = None


def _buttons(*rows: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data) for label, data in row] for row in rows]
    )


def _draft(context: Context) -> dict[str, Any]:
    chat_data = context.chat_data if context.chat_data is not None else {}
    draft = chat_data.setdefault("draft", {})
    assert isinstance(draft, dict)
    return draft


async def send(update: Update, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
    chat = update.effective_chat
    if chat is not None:
        await chat.send_message(text, reply_markup=markup)


async def _pressed(update: Update) -> str:
    """Acknowledge a button press, remove the buttons it came with, return its data."""
    query = update.callback_query
    assert query is not None
    await query.answer()
    # Already edited (a double tap) or too old to edit: nothing to remove.
    with contextlib.suppress(BadRequest):
        await query.edit_message_reply_markup(None)
    return str(query.data or "")


class Form:
    """The callbacks of the form; each docstring says what it stores and what it asks next."""

    def __init__(self, services: Services) -> None:
        self.services = services

    # --- asking -----------------------------------------------------------------------------

    async def ask(self, update: Update, context: Context, step: Step) -> State:
        """Send the question of ``step`` (with its buttons) and wait in its state."""
        draft = _draft(context)
        if step == Step.ENTIDAD:
            await send(
                update,
                texts.PREGUNTA_ENTIDAD,
                _buttons([(texts.BTN_SI, "entidad:si"), (texts.BTN_NO, "entidad:no")]),
            )
        elif step == Step.TIPO_DOCUMENTO:
            await send(
                update,
                texts.PREGUNTA_TIPO_DOCUMENTO,
                _buttons(*[[(label, f"doc:{kind}")] for kind, label in texts.DOCUMENT_LABELS.items()]),
            )
        elif step == Step.NUMERO_DOCUMENTO:
            label = texts.DOCUMENT_LABELS.get(str(draft.get(Step.TIPO_DOCUMENTO)), texts.BTN_DNI)
            await send(update, texts.render(texts.PREGUNTA_NUMERO_DOCUMENTO, documento=label))
        elif step == Step.APELLIDO_MATERNO:
            await send(
                update,
                texts.PREGUNTA_APELLIDO_MATERNO,
                _buttons([(texts.BTN_SIN_MATERNO, "materno:ninguno")]),
            )
        elif step == Step.TEMA:
            organos = await asyncio.to_thread(store.temas, self.services.sessions)
            rows = [[(name, f"tema:{code}")] for code, name in organos]
            rows.append([(texts.BTN_ADMINISTRATIVA, f"tema:{ADMINISTRATIVA}")])
            await send(update, texts.PREGUNTA_TEMA, _buttons(*rows))
        else:
            await send(update, _QUESTIONS[step])
        return State(step.value)

    async def advance(self, update: Update, context: Context) -> State:
        """Ask the first field still empty, or show the summary when the form is complete."""
        step = next_step(_draft(context))
        if step is None:
            return await self.summary(update, context)
        return await self.ask(update, context, step)

    async def summary(self, update: Update, context: Context) -> State:
        """Show every answer (escaped) with Confirmar / Corregir / Cancelar."""
        lines = [texts.RESUMEN_TITULO, ""]
        for label, value in summary_rows(_draft(context)):
            shown = value[:SUMMARY_QUESTION_CHARS] + "…" if len(value) > SUMMARY_QUESTION_CHARS else value
            lines.append(f"<b>{html.escape(label)}:</b> {html.escape(shown)}")
        lines += ["", texts.RESUMEN_PIE]
        await send(
            update,
            "\n".join(lines),
            _buttons(
                [(texts.BTN_CONFIRMAR, "confirmar")],
                [(texts.BTN_CORREGIR, "corregir"), (texts.BTN_CANCELAR, "cancelar")],
            ),
        )
        return State.RESUMEN

    # --- entry, exit ------------------------------------------------------------------------

    async def start(self, update: Update, context: Context) -> State:
        """/start, /nueva: open a new flow (a new consulta), empty draft; ask about the entity."""
        if context.chat_data is not None:
            context.chat_data["draft"] = {}
            context.chat_data["flow_id"] = uuid.uuid4().hex
        await send(update, texts.BIENVENIDA)
        return await self.ask(update, context, Step.ENTIDAD)

    async def cancel(self, update: Update, context: Context) -> int:
        """/cancelar or the Cancelar button: forget the draft; nothing is registered."""
        if update.callback_query is not None:
            await _pressed(update)
        if context.chat_data is not None:
            context.chat_data.pop("draft", None)
            context.chat_data.pop("flow_id", None)
        await send(update, texts.CANCELADA)
        return ConversationHandler.END

    async def timeout(self, update: Update, context: Context) -> None:
        """The form was idle too long: forget the draft and say so."""
        if context.chat_data is not None:
            context.chat_data.pop("draft", None)
            context.chat_data.pop("flow_id", None)
        await send(update, texts.TIEMPO_AGOTADO)

    # --- answers ----------------------------------------------------------------------------

    async def entidad(self, update: Update, context: Context) -> State:
        """Store whether the citizen represents an entity (RUC and razón social asked if so)."""
        set_entidad(_draft(context), await _pressed(update) == "entidad:si")
        return await self.advance(update, context)

    async def tipo_documento(self, update: Update, context: Context) -> State:
        """Store the document type (DNI, CE, PASAPORTE); ask its number."""
        kind = (await _pressed(update)).removeprefix("doc:")
        set_tipo_documento(_draft(context), kind)
        return await self.advance(update, context)

    async def sin_materno(self, update: Update, context: Context) -> State:
        """The citizen has no second surname: store it empty and go on."""
        await _pressed(update)
        _draft(context)[Step.APELLIDO_MATERNO.value] = ""
        return await self.advance(update, context)

    async def tema(self, update: Update, context: Context) -> State:
        """Store the chosen organo code (or ADMINISTRATIVA) and its name; ask the question."""
        code = (await _pressed(update)).removeprefix("tema:")
        organos = dict(await asyncio.to_thread(store.temas, self.services.sessions))
        if code != ADMINISTRATIVA and code not in organos:
            return await self.ask(update, context, Step.TEMA)  # the registry changed meanwhile
        draft = _draft(context)
        draft[Step.TEMA.value] = code
        draft["tema_nombre"] = organos.get(code, texts.BTN_ADMINISTRATIVA)
        return await self.advance(update, context)

    async def text_answer(self, update: Update, context: Context) -> State:
        """Validate the typed answer of the current field; store it and go on, or re-ask with why."""
        draft = _draft(context)
        step = next_step(draft)
        message = update.effective_message
        if step is None or step not in TYPED_STEPS or message is None or message.text is None:
            return await self.advance(update, context)  # out of step (e.g. a lost draft): re-ask
        try:
            accept_text(draft, step, message.text)
        except ValueError as exc:
            await send(update, texts.render(texts.REINTENTAR, motivo=str(exc)))
            return State(step.value)
        return await self.advance(update, context)

    async def use_buttons(self, update: Update, context: Context) -> None:
        """Text typed where a button is expected: point at the buttons, stay in the state."""
        await send(update, texts.USE_BOTONES)

    # --- summary ----------------------------------------------------------------------------

    async def corregir(self, update: Update, context: Context) -> State:
        """Corregir: list the fields of this form as buttons."""
        await _pressed(update)
        draft = _draft(context)
        rows = [[(texts.ETIQUETAS[step.value], f"fix:{step.value}")] for step in Step if applies(draft, step)]
        rows.append([(texts.BTN_VOLVER, "volver")])
        await send(update, texts.PREGUNTA_CORREGIR, _buttons(*rows))
        return State.CORREGIR

    async def corregir_campo(self, update: Update, context: Context) -> State:
        """A field to correct was chosen: forget it and ask it again (then back to the summary)."""
        data = await _pressed(update)
        if data == "volver":
            return await self.summary(update, context)
        try:
            step = Step(data.removeprefix("fix:"))
        except ValueError:
            return await self.summary(update, context)
        reopen(_draft(context), step)
        return await self.ask(update, context, step)

    async def confirmar(self, update: Update, context: Context) -> State | int:
        """Confirmar: admit the consulta once (as mail), tell its number, dates and mail; end the flow."""
        query = update.callback_query
        assert query is not None
        await query.answer()
        chat = update.effective_chat
        chat_data = context.chat_data
        if chat is None or chat_data is None or "flow_id" not in chat_data:
            await send(update, texts.BOTON_VENCIDO)
            return ConversationHandler.END
        draft = _draft(context)
        extraction = check_requisitos(to_requisitos(draft))
        if not extraction.complete:
            wrong = [*extraction.missing, *extraction.invalid]
            for key in wrong:
                reopen(draft, REQUISITO_STEPS[key])
            campos = ", ".join(texts.ETIQUETAS[REQUISITO_STEPS[key].value].lower() for key in wrong)
            await send(update, texts.render(texts.DATOS_INCOMPLETOS, campos=campos))
            return await self.advance(update, context)
        admitted = await asyncio.to_thread(
            store.admit_flow,
            self.services.sessions,
            extraction.requisitos,
            flow_id=str(chat_data["flow_id"]),
            chat_id=chat.id,
            tema=draft.get(Step.TEMA),
            config=self.services.config,
            now=self.services.clock.now(),
        )
        logger.info("telegram chat %s: consulta %s admitted", chat.id, admitted.number)
        if self.services.on_committed is not None and admitted.outbox_ids:
            await asyncio.to_thread(self.services.on_committed, list(admitted.outbox_ids))
        chat_data["ultima"] = admitted.number
        chat_data.pop("draft", None)
        chat_data.pop("flow_id", None)
        with contextlib.suppress(BadRequest):
            await query.edit_message_reply_markup(None)
        await send(update, _registered_text(admitted))
        return ConversationHandler.END

    async def stale_button(self, update: Update, context: Context) -> None:
        """A button of a finished flow (e.g. Confirmar pressed twice): say so, create nothing."""
        data = await _pressed(update)
        ultima = (context.chat_data or {}).get("ultima")
        if data == "confirmar" and ultima:
            await send(update, texts.render(texts.YA_REGISTRADA, numero=ultima))
        else:
            await send(update, texts.BOTON_VENCIDO)

    # --- outside a flow ---------------------------------------------------------------------

    async def help(self, update: Update, context: Context) -> None:
        """/ayuda, unknown commands and stray text: list the commands."""
        await send(update, texts.AYUDA)

    async def nothing_to_cancel(self, update: Update, context: Context) -> None:
        """/cancelar with no form open."""
        await send(update, texts.NADA_QUE_CANCELAR)


_QUESTIONS = {
    Step.NOMBRES: texts.PREGUNTA_NOMBRES,
    Step.APELLIDO_PATERNO: texts.PREGUNTA_APELLIDO_PATERNO,
    Step.CORREO: texts.PREGUNTA_CORREO,
    Step.RUC: texts.PREGUNTA_RUC,
    Step.RAZON_SOCIAL: texts.PREGUNTA_RAZON_SOCIAL,
    Step.TELEFONO: texts.PREGUNTA_TELEFONO,
    Step.CONSULTA: texts.PREGUNTA_CONSULTA,
}


def _registered_text(admitted: store.Admitted) -> str:
    return texts.render(
        texts.REGISTRADA,
        numero=admitted.number,
        presentada=texts.fecha(admitted.presented_on) if admitted.presented_on else texts.SIN_DATO,
        plazo=texts.fecha(admitted.due_on) if admitted.due_on else texts.SIN_DATO,
        correo=admitted.email or texts.SIN_DATO,
    )


_TEXT = filters.TEXT & ~filters.COMMAND


_Callback = Callable[[Update, Context], Coroutine[Any, Any, Any]]


def _while_open(form: Form, callback: _Callback) -> _Callback:
    """``callback`` while the form is open; once it was closed, the update is answered as outside it.

    The idle timeout closes the form (drops the flow) before its notice goes out, but the
    conversation's state only changes after that: a button pressed right after the notice must not
    reopen the form with an empty draft.
    """

    async def guarded(update: Update, context: Context) -> Any:
        if context.chat_data is None or "flow_id" in context.chat_data:
            return await callback(update, context)
        if update.callback_query is not None:
            await form.stale_button(update, context)
        else:
            await form.help(update, context)
        return ConversationHandler.END

    return guarded


def form_handler(form: Form, *, timeout_s: float | None) -> ConversationHandler[Context]:
    """The whole Anexo N° 1 form (diagram: bot/conversation.mmd)."""

    def guard(callback: _Callback) -> _Callback:
        return _while_open(form, callback)

    with warnings.catch_warnings():
        # Buttons are tracked per chat on purpose (one form per chat), not per message.
        warnings.filterwarnings("ignore", message="If 'per_message=False'", category=PTBUserWarning)
        return ConversationHandler(
            entry_points=[CommandHandler(["start", "nueva"], form.start)],
            states={
                State.ENTIDAD: [
                    CallbackQueryHandler(guard(form.entidad), pattern=r"^entidad:(si|no)$"),
                    MessageHandler(_TEXT, guard(form.use_buttons)),
                ],
                State.TIPO_DOCUMENTO: [
                    CallbackQueryHandler(guard(form.tipo_documento), pattern=r"^doc:(DNI|CE|PASAPORTE)$"),
                    MessageHandler(_TEXT, guard(form.use_buttons)),
                ],
                State.NUMERO_DOCUMENTO: [MessageHandler(_TEXT, guard(form.text_answer))],
                State.NOMBRES: [MessageHandler(_TEXT, guard(form.text_answer))],
                State.APELLIDO_PATERNO: [MessageHandler(_TEXT, guard(form.text_answer))],
                State.APELLIDO_MATERNO: [
                    CallbackQueryHandler(guard(form.sin_materno), pattern=r"^materno:ninguno$"),
                    MessageHandler(_TEXT, guard(form.text_answer)),
                ],
                State.CORREO: [MessageHandler(_TEXT, guard(form.text_answer))],
                State.RUC: [MessageHandler(_TEXT, guard(form.text_answer))],
                State.RAZON_SOCIAL: [MessageHandler(_TEXT, guard(form.text_answer))],
                State.TELEFONO: [MessageHandler(_TEXT, guard(form.text_answer))],
                State.TEMA: [
                    CallbackQueryHandler(guard(form.tema), pattern=r"^tema:"),
                    MessageHandler(_TEXT, guard(form.use_buttons)),
                ],
                State.CONSULTA: [MessageHandler(_TEXT, guard(form.text_answer))],
                State.RESUMEN: [
                    CallbackQueryHandler(guard(form.confirmar), pattern=r"^confirmar$"),
                    CallbackQueryHandler(guard(form.corregir), pattern=r"^corregir$"),
                    CallbackQueryHandler(form.cancel, pattern=r"^cancelar$"),
                    MessageHandler(_TEXT, guard(form.use_buttons)),
                ],
                State.CORREGIR: [
                    CallbackQueryHandler(guard(form.corregir_campo), pattern=r"^(fix:\w+|volver)$"),
                    MessageHandler(_TEXT, guard(form.use_buttons)),
                ],
                ConversationHandler.TIMEOUT: [TypeHandler(Update, form.timeout)],
            },
            fallbacks=[CommandHandler("cancelar", form.cancel)],
            allow_reentry=True,
            conversation_timeout=timeout_s,
            name="formulario",
            persistent=True,
        )


def other_handlers(form: Form) -> list[Any]:
    """Handlers after the form in its group: stale buttons, /ayuda, stray text and commands."""
    return [
        CallbackQueryHandler(form.stale_button),
        CommandHandler("cancelar", form.nothing_to_cancel),
        MessageHandler(filters.COMMAND & ~filters.Regex(r"^/estado(@\w+)?(\s|$)"), form.help),
        MessageHandler(_TEXT, form.help),
    ]
