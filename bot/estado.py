"""``/estado CONS-AAAA-NNNNNN``: a consulta's progress, only for the chat that created it (or after
its identity document is given), never telling another chat whether a number exists.

Runs in an earlier handler group than the form (``bot.app``), so a pending document number is
taken here, and stops there, even while a form is open in the same chat.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum

from telegram import Update
from telegram.ext import (
    ApplicationHandlerStop,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot import store, texts
from bot.conversation import Services, send
from consultas.numbering import NUMBER_PATTERN

Context = ContextTypes.DEFAULT_TYPE


class EstadoState(StrEnum):
    """The ``/estado`` look-up from a chat that did not create the consulta."""

    DOCUMENTO = "estado_documento"


class EstadoLookup:
    """The callbacks of ``/estado``."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def estado(self, update: Update, context: Context) -> EstadoState | int:
        """/estado NUMBER: answer the chat that created it; any other chat is asked its document."""
        chat = update.effective_chat
        args = context.args or []
        match = NUMBER_PATTERN.fullmatch(args[0].strip()) if args else None
        if chat is None or context.chat_data is None or match is None:
            await send(update, texts.ESTADO_USO)
            raise ApplicationHandlerStop(ConversationHandler.END)
        number = match.group(0).upper()
        found = await asyncio.to_thread(self._estado, number, chat.id, None)
        if found is not None:
            await send(update, estado_text(found))
            raise ApplicationHandlerStop(ConversationHandler.END)
        # Whether or not the number exists, another chat gets the same question (no oracle).
        context.chat_data["estado_numero"] = number
        await send(update, texts.ESTADO_PEDIR_DOCUMENTO)
        raise ApplicationHandlerStop(EstadoState.DOCUMENTO)

    async def estado_documento(self, update: Update, context: Context) -> int:
        """The document number for a pending /estado: answer if it matches, else one refusal."""
        chat, message = update.effective_chat, update.effective_message
        number = (context.chat_data or {}).pop("estado_numero", None)
        found = None
        if chat is not None and message is not None and message.text and number:
            found = await asyncio.to_thread(self._estado, str(number), chat.id, message.text)
        await send(update, estado_text(found) if found is not None else texts.ESTADO_NO_DISPONIBLE)
        # The text was the document number, not an answer to the form: stop here.
        raise ApplicationHandlerStop(ConversationHandler.END)

    async def estado_abandon(self, update: Update, context: Context) -> int:
        """Another command while the document is awaited: drop the look-up; the command runs on."""
        if context.chat_data is not None:
            context.chat_data.pop("estado_numero", None)
        return ConversationHandler.END

    def _estado(self, number: str, chat_id: int, document: str | None) -> store.Estado | None:
        return store.estado(
            self.services.sessions,
            number,
            chat_id=chat_id,
            document=document,
            config=self.services.config,
            now=self.services.clock.now(),
        )


def estado_text(found: store.Estado) -> str:
    """The Spanish status message of a consulta."""
    lines = [
        texts.render(
            texts.ESTADO_CABECERA,
            numero=found.number,
            estado=texts.ESTADO_NOMBRES.get(found.status.value, found.status.value),
        ),
    ]
    if found.presented_on is not None:
        lines.append(texts.render(texts.ESTADO_PRESENTADA, fecha=texts.fecha(found.presented_on)))
    if found.answered_on is not None:
        lines.append(texts.render(texts.ESTADO_RESPONDIDA, fecha=texts.fecha(found.answered_on)))
    elif found.due_on is not None and found.working_days_left is not None:
        lines.append(
            texts.render(
                texts.ESTADO_PLAZO,
                fecha=texts.fecha(found.due_on),
                restantes=texts.dias_restantes(found.working_days_left),
            )
        )
    return "\n".join(lines)


def estado_handler(lookup: EstadoLookup, *, timeout_s: float | None) -> ConversationHandler[Context]:
    """The ``/estado`` look-up as a small conversation (it may wait for the document number)."""
    return ConversationHandler(
        entry_points=[CommandHandler("estado", lookup.estado)],
        states={
            EstadoState.DOCUMENTO: [MessageHandler(filters.TEXT & ~filters.COMMAND, lookup.estado_documento)]
        },
        fallbacks=[MessageHandler(filters.COMMAND, lookup.estado_abandon)],
        allow_reentry=True,
        conversation_timeout=timeout_s,
        name="estado",
        persistent=True,
    )
