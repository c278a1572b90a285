"""Red (and OGDAU) replies to routed mails: match, authenticate, execute commands, answer the citizen.

Owns ``handle_reply``, called by the intake pipeline for every non-automatic inbound mail before
it is treated as a citizen's. The address codec, reply stripping and command parsing are pure
core (``reply_address``, ``reply_parsing``); derivation and the answer are their own modules.

Matching (first hit wins, Zulip's email gateway does the same with its recipient headers):
1. our signed reply address in To, Cc, Delivered-To or X-Original-To (valid or not);
2. In-Reply-To/References naming one of our mails to the Red (``ROUTING_TEMPLATES``);
3. a consulta number in the subject, only when the sender is a current Red member or OGDAU
   (a citizen quoting their number is a citizen's follow-up, left to intake).

A matched mail is accepted only when it came through a validly signed address of that consulta
AND its sender is the assigned organo's current titular or alterno (OGDAU for administrativa
ones). Anything else never reaches the citizen: the message is linked to the consulta as
``rejected_reply``, an event keeps the reason and OGDAU gets an ``aviso_ogdau``.

Accepted replies: ``#nota`` lines become events only; ``#derivar CODE`` / ``#administrativa``
re-assign the consulta, and the rest of the reply then goes to the new recipient as a note in
the routed mail, never to the citizen; otherwise a non-empty answer goes to the citizen with the
reply's attachments and the consulta closes. A reply to a closed consulta is recorded and OGDAU
told; nothing is sent again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from consultas import events
from consultas.context import ServiceConfig
from consultas.lookup import sent_message_pks
from consultas.mailer import Envelope
from consultas.mime import ParsedMail
from consultas.models import Consulta, ConsultaStatus, Message, MessageKind, Outbox
from consultas.numbering import find_numbers
from consultas.outbox import enqueue_mail
from consultas.reply_parsing import RedCommands, parse_red_commands, strip_reply
from routing.absence import clear_absence
from routing.answer import answering_organo_name, send_answer
from routing.assignment import (
    OGDAU,
    RED_ACK_TEMPLATE,
    RED_NOTICE_TEMPLATE,
    ROUTING_TEMPLATES,
    outgoing_attachments,
    tell_ogdau,
)
from routing.authres import authentication_failure
from routing.corrections import SOURCE_ADMINISTRATIVA, SOURCE_DERIVAR, record_correction
from routing.derivation import derivar, return_to_ogdau
from routing.red_registry import active_organos, is_any_red_member, is_red_member
from routing.reply_address import find_reply_token, make_reply_address, redact_address

logger = logging.getLogger(__name__)

#: Headers that may carry the address a mail was delivered to (the signed reply address).
RECIPIENT_HEADERS = ("delivered-to", "x-original-to")
#: How much of a rejected reply OGDAU's alert quotes.
ALERT_EXCERPT_CHARS = 4000


@dataclass(frozen=True)
class ReplyMatch:
    """The consulta a mail claims to answer and how we know."""

    consulta: Consulta | None
    number: str
    signed: bool  # came through a validly signed reply address of ``number``
    via: str  # "address", "thread" or "subject"


def handle_reply(
    session: Session, mail: ParsedMail, message: Message, *, config: ServiceConfig, now: datetime
) -> bool:
    """Handle ``mail`` if it is a reply to a routed consulta; False when it is a citizen's mail.

    Caller owns the transaction; ``message`` is the stored inbound row (with its attachments).
    """
    match = match_reply(session, mail, config=config)
    if match is None:
        return False
    sender = mail.sender.lower()
    consulta = match.consulta
    if consulta is None:
        _reject(
            session,
            mail,
            message,
            None,
            reason=f"número de consulta desconocido: {match.number}",
            config=config,
            now=now,
        )
        return True
    if not match.signed:
        reason = (
            "la dirección de respuesta firmada fue alterada o falsificada"
            if match.via == "address"
            else "la respuesta no llegó por la dirección firmada de la consulta"
        )
        _reject(session, mail, message, consulta, reason=reason, config=config, now=now)
        return True
    if not _authorised(session, consulta, sender, config):
        who = f"titular ni alterno de {consulta.organo_code}" if consulta.organo_code else "OGDAU"
        _reject(session, mail, message, consulta, reason=f"el remitente no es {who}", config=config, now=now)
        return True
    if config.authserv_id:  # the ministry MTA vouches for the sender (routing.authres)
        failure = authentication_failure(message.raw or b"", sender, config.authserv_id)
        if failure is not None:
            _reject(session, mail, message, consulta, reason=failure, config=config, now=now)
            return True

    message.consulta_id = consulta.id
    message.kind = MessageKind.RED_REPLY
    session.flush()
    clear_absence(session, sender, now=now, consulta=consulta)  # back from an out-of-office
    if consulta.status != ConsultaStatus.ASIGNADA:
        events.record(session, "reply_after_close", now=now, consulta=consulta, message=message, actor=sender)
        tell_ogdau(
            session,
            config=config,
            now=now,
            key=f"respuesta-cerrada:{message.id}",
            titulo="Respuesta de la Red a una consulta ya cerrada",
            detalle="La consulta ya fue respondida; este mensaje no se envió al ciudadano.",
            consulta=consulta,
            remitente=sender,
            asunto=mail.subject,
            mensaje=strip_reply(mail.text)[:ALERT_EXCERPT_CHARS],
        )
        return True
    commands = parse_red_commands(strip_reply(mail.text))
    _execute(session, consulta, commands, mail, message, config=config, now=now)
    return True


def match_reply(session: Session, mail: ParsedMail, *, config: ServiceConfig) -> ReplyMatch | None:
    """Find the consulta ``mail`` replies to (see the module docstring for the order)."""
    addresses = [*mail.to, *mail.cc, *(mail.headers.get(name, "") for name in RECIPIENT_HEADERS)]
    token = find_reply_token([a for a in addresses if a], config.mailbox, config.secret_key)
    if token is not None:
        return ReplyMatch(_by_number(session, token.number), token.number, token.valid, "address")
    ours = sent_message_pks(session, mail.thread_ids, sender=config.identity.address)
    if ours:  # a reply in one of our threads
        consulta = session.scalar(
            select(Consulta)
            .join(Message, Message.consulta_id == Consulta.id)
            .join(Outbox, Outbox.message_pk == Message.id)
            .where(Message.id.in_(sorted(ours.values())), Outbox.template.in_(sorted(ROUTING_TEMPLATES)))
            .limit(1)
        )
        if consulta is not None:
            return ReplyMatch(consulta, consulta.number or "", False, "thread")
    sender = mail.sender.lower()
    numbers = find_numbers(mail.subject)
    if numbers and sender and (sender == config.ogdau_email.lower() or is_any_red_member(session, sender)):
        for number in numbers:
            consulta = _by_number(session, number)
            if consulta is not None:
                return ReplyMatch(consulta, number, False, "subject")
    return None


def _by_number(session: Session, number: str) -> Consulta | None:
    return session.scalar(select(Consulta).where(Consulta.number == number))


def _authorised(session: Session, consulta: Consulta, sender: str, config: ServiceConfig) -> bool:
    if consulta.organo_code is not None:
        return is_red_member(session, sender, consulta.organo_code)
    return sender == config.ogdau_email.lower()


def _reject(
    session: Session,
    mail: ParsedMail,
    message: Message,
    consulta: Consulta | None,
    *,
    reason: str,
    config: ServiceConfig,
    now: datetime,
) -> None:
    message.consulta_id = consulta.id if consulta is not None else None
    message.kind = MessageKind.REJECTED_REPLY
    message.error = reason
    session.flush()
    events.record(
        session,
        "reply_rejected",
        now=now,
        consulta=consulta,
        message=message,
        actor=mail.sender,
        reason=reason,
    )
    logger.info(
        "reply rejected for consulta %s (Message-ID %s): %s",
        consulta.number if consulta else "-",
        mail.message_id,
        reason,
    )
    remitente = f"{mail.sender_name} <{mail.sender}>" if mail.sender_name else mail.sender
    tell_ogdau(
        session,
        config=config,
        now=now,
        key=f"respuesta-rechazada:{message.id}",
        titulo="Respuesta rechazada: no se envió al ciudadano",
        detalle=f"Motivo: {reason}. Destinatarios: "
        + ", ".join(redact_address(a) for a in [*mail.to, *mail.cc]),
        consulta=consulta,
        remitente=remitente,
        asunto=mail.subject,
        mensaje=strip_reply(mail.text)[:ALERT_EXCERPT_CHARS],
    )


def _execute(
    session: Session,
    consulta: Consulta,
    commands: RedCommands,
    mail: ParsedMail,
    message: Message,
    *,
    config: ServiceConfig,
    now: datetime,
) -> None:
    sender = mail.sender.lower()
    answered_by = consulta.organo_code or OGDAU
    for text in commands.notas:
        events.record(session, "nota", now=now, consulta=consulta, message=message, actor=sender, text=text)
    if commands.unknown:
        _notify_sender(
            session,
            consulta,
            message,
            sender=sender,
            config=config,
            now=now,
            key="desconocido",
            titulo="Comando no reconocido",
            detalle="No se reconocieron estas líneas: "
            + "; ".join(commands.unknown)
            + ". No se envió nada al ciudadano. Use #derivar CÓDIGO, #administrativa o #nota texto.",
        )
        if not (commands.derivar or commands.administrativa):
            return
    nota = commands.body or None
    if commands.derivar and commands.administrativa:
        _notify_sender(
            session,
            consulta,
            message,
            sender=sender,
            config=config,
            now=now,
            key="conflicto",
            titulo="Comandos incompatibles",
            detalle="Use #derivar o #administrativa, no ambos. La consulta no cambió.",
        )
        return
    if commands.derivar:
        if commands.derivar == consulta.organo_code:
            _notify_sender(
                session,
                consulta,
                message,
                sender=sender,
                config=config,
                now=now,
                key="mismo-organo",
                titulo="La consulta ya está asignada a ese órgano",
                detalle=f"La consulta ya está asignada a {commands.derivar}; no cambió.",
            )
        elif derivar(session, consulta, commands.derivar, config=config, now=now, actor=sender, nota=nota):
            record_correction(
                session, consulta, consulta.organo_code, by=sender, now=now, source=SOURCE_DERIVAR
            )
        else:
            detalle = (
                f"El código {commands.derivar} no corresponde a ningún órgano de la Red. "
                "La consulta no cambió."
            )
            _notify_sender(
                session,
                consulta,
                message,
                sender=sender,
                config=config,
                now=now,
                key="codigo",
                titulo="Código de órgano desconocido",
                detalle=detalle,
            )
            tell_ogdau(
                session,
                config=config,
                now=now,
                key=f"derivacion-invalida:{message.id}",
                titulo="Derivación con código desconocido",
                detalle=detalle,
                consulta=consulta,
                remitente=sender,
                asunto=mail.subject,
            )
        return
    if commands.administrativa:
        return_to_ogdau(session, consulta, config=config, now=now, actor=sender, nota=nota)
        record_correction(session, consulta, None, by=sender, now=now, source=SOURCE_ADMINISTRATIVA)
        return
    if commands.body:
        send_answer(
            session,
            consulta,
            body=commands.body,
            attachments=outgoing_attachments(message.attachments),
            answered_by=answered_by,
            config=config,
            now=now,
        )
        _notify_sender(
            session,
            consulta,
            message,
            sender=sender,
            config=config,
            now=now,
            key="recibida",
            titulo="Respuesta enviada al ciudadano",
            detalle=(
                "Su respuesta fue enviada al ciudadano en nombre de "
                f"{answering_organo_name(session, answered_by)}."
            ),
            template=RED_ACK_TEMPLATE,
        )
        return
    if not commands.notas:
        _notify_sender(
            session,
            consulta,
            message,
            sender=sender,
            config=config,
            now=now,
            key="vacia",
            titulo="Respuesta vacía",
            detalle=(
                "Su correo no contenía una respuesta (solo historial citado). No se envió nada al ciudadano."
            ),
        )


def _notify_sender(
    session: Session,
    consulta: Consulta,
    message: Message,
    *,
    sender: str,
    config: ServiceConfig,
    now: datetime,
    key: str,
    titulo: str,
    detalle: str,
    template: str = RED_NOTICE_TEMPLATE,
) -> None:
    number = consulta.number or ""
    enqueue_mail(
        session,
        template=template,
        context={
            "numero": number,
            "asunto": consulta.subject or "",
            "titulo": titulo,
            "detalle": detalle,
            "organos": [{"code": o.code, "name": o.name} for o in active_organos(session)],
        },
        envelope=Envelope(
            to=[sender],
            reply_to=make_reply_address(config.mailbox, number, config.secret_key),
            in_reply_to=message.message_id,
            references=[message.message_id],
        ),
        identity=config.identity,
        idempotency_key=f"aviso-red:{message.id}:{key}",
        now=now,
        consulta=consulta,
        automatic=False,
    )
    events.record(
        session, "red_notified", now=now, consulta=consulta, message=message, actor=sender, titulo=titulo
    )
