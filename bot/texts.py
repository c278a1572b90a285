"""Every Spanish string the bot sends, in one place (HTML parse mode: only our own tags).

Values typed by a citizen are never pasted in here raw: callers go through ``render`` (or
``html.escape``), so a "<b>" typed by a user is shown literally. Relayed Red answers
(``workers.telegram``) are plain text with no parse mode at all.
"""

from __future__ import annotations

import html
from datetime import date
from typing import Final

from consultas.mailer import MONTHS_ES, WEEKDAYS_ES

# --- buttons -------------------------------------------------------------------------------------

BTN_SI: Final = "Sí"
BTN_NO: Final = "No"
BTN_DNI: Final = "DNI"
BTN_CE: Final = "Carné de extranjería"
BTN_PASAPORTE: Final = "Pasaporte"
BTN_SIN_MATERNO: Final = "No tengo apellido materno"
BTN_ADMINISTRATIVA: Final = "Trámites y servicios del MEF (administrativa)"
BTN_CONFIRMAR: Final = "✅ Confirmar"
BTN_CORREGIR: Final = "✏️ Corregir"
BTN_CANCELAR: Final = "❌ Cancelar"
BTN_VOLVER: Final = "↩️ Volver al resumen"

DOCUMENT_LABELS: Final = {"DNI": BTN_DNI, "CE": BTN_CE, "PASAPORTE": BTN_PASAPORTE}

# --- the form (Anexo N° 1) -----------------------------------------------------------------------

BIENVENIDA: Final = (
    "Bienvenido(a) al <b>Sistema de Atención de Consultas del MEF</b>.\n"
    "Le haré las preguntas del Formulario de Registro de Consultas (Anexo N° 1). "
    "Puede escribir /cancelar en cualquier momento."
)
PREGUNTA_ENTIDAD: Final = "¿Realiza la consulta en representación de una entidad?"
PREGUNTA_TIPO_DOCUMENTO: Final = "¿Cuál es su documento de identidad?"
PREGUNTA_NUMERO_DOCUMENTO: Final = "Escriba el número de su {documento}."
PREGUNTA_NOMBRES: Final = "Escriba sus <b>nombres</b>."
PREGUNTA_APELLIDO_PATERNO: Final = "Escriba su <b>apellido paterno</b>."
PREGUNTA_APELLIDO_MATERNO: Final = "Escriba su <b>apellido materno</b>."
PREGUNTA_CORREO: Final = (
    "Escriba su <b>correo electrónico</b>. Allí le enviaremos el número de su consulta y la respuesta."
)
PREGUNTA_RUC: Final = "Escriba el <b>RUC</b> de la entidad que representa (11 dígitos)."
PREGUNTA_RAZON_SOCIAL: Final = "Escriba la <b>razón social</b> (nombre) de la entidad."
PREGUNTA_TELEFONO: Final = "Escriba su número de <b>celular o teléfono fijo</b>."
PREGUNTA_TEMA: Final = "Elija el <b>tema de su consulta</b>:"
PREGUNTA_CONSULTA: Final = (
    "Escriba su <b>consulta</b> de forma clara y concreta, en un solo mensaje "
    "(por ejemplo: qué norma, sistema o trámite y qué necesita saber)."
)
REINTENTAR: Final = "⚠️ {motivo}\nPor favor, inténtelo de nuevo."
USE_BOTONES: Final = "Por favor, elija una de las opciones con los botones."

# The reasons a typed answer is refused come from consultas.validators, the same as for mail and the
# web form.

# --- summary and correction ----------------------------------------------------------------------

RESUMEN_TITULO: Final = "Revise sus datos antes de enviar la consulta:"
RESUMEN_PIE: Final = "¿Todo es correcto?"
ETIQUETAS: Final = {
    "entidad": "Representa a una entidad",
    "tipo_documento": "Documento",
    "numero_documento": "Número de documento",
    "nombres": "Nombres",
    "apellido_paterno": "Apellido paterno",
    "apellido_materno": "Apellido materno",
    "correo": "Correo electrónico",
    "ruc": "RUC",
    "razon_social": "Razón social",
    "telefono": "Celular/teléfono",
    "tema": "Tema",
    "consulta": "Consulta",
}
SIN_DATO: Final = "—"
PREGUNTA_CORREGIR: Final = "¿Qué dato desea corregir?"

# --- outcome -------------------------------------------------------------------------------------

REGISTRADA: Final = (
    "✅ Su consulta fue registrada con el número <b>{numero}</b>.\n"
    "Fecha de presentación: {presentada}.\n"
    "Plazo de atención: hasta el {plazo}.\n"
    "Le enviamos la confirmación a {correo}. La respuesta le llegará por correo y por este chat.\n"
    "Para ver el estado escriba /estado {numero}. Para otra consulta, /nueva."
)
YA_REGISTRADA: Final = "Su consulta ya fue registrada con el número <b>{numero}</b>."
DATOS_INCOMPLETOS: Final = "Faltan o no son válidos estos datos: {campos}. Corríjalos, por favor."
CANCELADA: Final = "Consulta cancelada; no se registró nada. Escriba /nueva para empezar otra."
NADA_QUE_CANCELAR: Final = "No hay ninguna consulta en curso. Escriba /nueva para empezar una."
TIEMPO_AGOTADO: Final = (
    "La conversación se cerró por inactividad y sus datos no se registraron. "
    "Escriba /nueva cuando desee empezar de nuevo."
)
BOTON_VENCIDO: Final = "Este botón ya no está activo. Escriba /nueva para empezar una consulta."
AYUDA: Final = (
    "Comandos:\n/nueva: registrar una consulta\n/estado CONS-AAAA-NNNNNN: ver el estado de una consulta\n"
    "/cancelar: cancelar la consulta en curso"
)
ERROR_INTERNO: Final = (
    "Lo sentimos, ocurrió un problema al procesar su mensaje. Sus datos no se perdieron: "
    "inténtelo de nuevo en unos minutos."
)
DEMASIADOS_MENSAJES: Final = (
    "Está enviando mensajes muy rápido. Espere un momento, por favor; por ahora no los procesaremos."
)

# --- /estado -------------------------------------------------------------------------------------

ESTADO_USO: Final = "Escriba el número de su consulta, por ejemplo: /estado CONS-2025-000123"
ESTADO_PEDIR_DOCUMENTO: Final = (
    "Para proteger sus datos, escriba el número del documento de identidad con que registró la consulta."
)
ESTADO_NO_DISPONIBLE: Final = (
    "No podemos mostrar el estado de esa consulta en este chat. Verifique el número y el documento, "
    "o escríbanos a consultas@mef.gob.pe."
)
ESTADO_CABECERA: Final = "Consulta <b>{numero}</b>: {estado}."
ESTADO_PRESENTADA: Final = "Fecha de presentación: {fecha}."
ESTADO_PLAZO: Final = "Plazo de atención: hasta el {fecha} ({restantes})."
ESTADO_RESPONDIDA: Final = "Respondida el {fecha}. La respuesta se envió a su correo."
ESTADO_NOMBRES: Final = {
    "subsanacion": "pendiente de completar requisitos",
    "admitida": "recibida",
    "asignada": "asignada al área competente, en atención",
    "respondida": "respondida",
    "archivada": "archivada",
}


def dias_restantes(dias: int) -> str:
    """'quedan 3 días hábiles', 'vence hoy', 'vencida hace 2 días hábiles'."""
    if dias > 1:
        return f"quedan {dias} días hábiles"
    if dias == 1:
        return "queda 1 día hábil"
    if dias == 0:
        return "vence hoy"
    return f"vencida hace {-dias} día{'s' if dias < -1 else ''} hábil{'es' if dias < -1 else ''}"


def fecha(day: date) -> str:
    """Spanish long date ("miércoles 12 de marzo de 2025"), independent of the OS locale."""
    return f"{WEEKDAYS_ES[day.weekday()]} {day.day} de {MONTHS_ES[day.month - 1]} de {day.year}"


def render(template: str, **values: object) -> str:
    """Fill ``template`` with ``values`` escaped for HTML parse mode."""
    return template.format(**{key: html.escape(str(value)) for key, value in values.items()})
