"""Classify a consulta as administrativa or técnica and pick its organo (directive 5.2).

Pure and fast: the organos' topics plus a built-in vocabulary of MEF domains are compiled once
per organo list (cached) into weighted stem n-grams; a mail is scored against every organo and
against the administrative vocabulary, the subject weighing more than the body. These rules
explain; a learned model (``routing.learning``, given by the caller) judges with them.

Decision rule (the choice for "no confident match"): when neither the rules nor the model are
confident, or when they disagree, the consulta is *administrativa* with ``organo=None``, so it
lands in OGDAU's tray, and the reason says OGDAU must triage it ("sin coincidencia confiable").
OGDAU is the front office (5.4.1) that evaluates the type anyway; a wrong automatic routing to
a Red member costs a derivation and days of the 10-day deadline, a triage costs minutes.

Leaves to others: the Red contacts (``routing.red_registry_file``), routing and derivation, the
model and its training (``routing.learning``, ``routing.corrections``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol

#: The pseudo-code for "administrativa" (Telegram bot theme choice and internal scoring key).
ADMINISTRATIVA = "ADMINISTRATIVA"
#: A match in the subject counts this many times a match in the body.
SUBJECT_WEIGHT = 2.0
#: Weight of terms the registry lists as an organo's topics vs the built-in related vocabulary.
TOPIC_WEIGHT = 1.5
VOCABULARY_WEIGHT = 1.0
#: Extra weight per extra word of a multi-word term (phrases are more specific than words).
PHRASE_BONUS = 0.6
#: Below this score nothing is confident.
MIN_SCORE = 2.0
#: The winner must beat the runner-up by this factor (and by MIN_MARGIN points).
MIN_RATIO = 1.35
MIN_MARGIN = 1.0
#: Longest term, in stems, that is matched as a phrase.
MAX_NGRAM = 5
#: The learned model alone routes (rules not confident) when its best class beats the runner-up by
#: this score margin: chosen by cross-validation on the labelled set's train split (0.3: 81 % right,
#: 1.4 % to a wrong organo; 0.2: 86 % and 2.1 %), never on its held-out third.
MODEL_MARGIN = 0.3
#: ... or by this smaller margin when it names the rules' own (not confident) best candidate: two
#: weak signals that agree (cross-validated as above: +1.2 points, no more wrong organos).
MODEL_AGREE_MARGIN = 0.1
#: Confident rules still need the model to agree by this margin: a tie in the model is no agreement
#: (cross-validated: 2 fewer wrong organos in 645 predictions for 0.3 points fewer right).
MODEL_CONFIRM_MARGIN = 0.05

Type = Literal["administrativa", "tecnica"]


@dataclass(frozen=True)
class OrganoTopics:
    """What the classifier needs to know about an organo."""

    code: str
    name: str
    topics: tuple[str, ...]


@dataclass(frozen=True)
class Classification:
    """The outcome: type, organo code (None: OGDAU) and a short reason for the audit trail."""

    type: Type
    organo: str | None
    reason: str


def _terms(text: str) -> tuple[str, ...]:
    return tuple(term.strip() for term in text.split(";") if term.strip())


@dataclass(frozen=True)
class _Domain:
    """A common MEF domain: attached to an organo whose topics or code match its anchors."""

    anchors: tuple[str, ...]
    codes: tuple[str, ...]
    terms: tuple[str, ...]


# Related vocabulary per domain: what citizens write instead of the topic strings.
# Terms are separated by ";" (kept as text so the table stays compact and readable).
_DOMAINS: tuple[_Domain, ...] = (
    _Domain(
        anchors=("presupuesto publico", "presupuesto", "sistema nacional de presupuesto"),
        codes=("DGPP",),
        terms=_terms(
            "presupuesto; presupuestal; presupuestaria; modificacion presupuestaria; credito "
            "presupuestario; certificacion de credito presupuestario; certificacion presupuestal; "
            "pia; pim; presupuesto institucional de apertura; presupuesto institucional modificado; "
            "transferencia de partidas; credito suplementario; habilitaciones; anulaciones; nivel "
            "funcional programatico; clasificador de gastos; generica de gasto; especifica de "
            "gasto; marco presupuestal; prevision presupuestaria; ley de presupuesto; programa "
            "presupuestal; presupuesto por resultados; pliego; recursos directamente recaudados; "
            "fuente de financiamiento; mayores ingresos; demanda adicional; ejecucion "
            "presupuestaria; directiva de ejecucion presupuestaria; programacion multianual "
            "presupuestaria; formulacion presupuestaria; programa de incentivos; saldo de balance; "
            "cadena funcional; incorporacion de mayores fondos; cierre del ano fiscal; ano fiscal"
        ),
    ),
    _Domain(
        anchors=(
            "invierte pe",
            "inversion publica",
            "programacion multianual de inversiones",
            "banco de inversiones",
        ),
        codes=("DGPMI",),
        terms=_terms(
            "invierte pe; invierte; proyecto de inversion; inversion; ioarr; viabilidad; unidad "
            "formuladora; unidad ejecutora de inversiones; codigo unico de inversion; cui; formato "
            "7; formato 8; formato 9; formato 12 b; expediente tecnico; cierre de inversion; "
            "programacion multianual de inversiones; pmi; cartera de inversiones; ficha tecnica; "
            "preinversion; perfil; fase de ejecucion; registro de modificaciones; opmi; snip; obra; "
            "seguimiento de inversiones; brecha; indicadores de brecha; optimizacion; ampliacion "
            "marginal; rehabilitacion; reposicion; banco de inversiones; variacion de costo; "
            "declarar viable; aprobacion de la inversion"
        ),
    ),
    _Domain(
        anchors=("tesoreria", "tesoro publico", "cuenta unica del tesoro", "endeudamiento"),
        codes=("DGTP",),
        terms=_terms(
            "tesoreria; tesoro; giro; girado; cuenta unica del tesoro; cut; carta orden; carta "
            "orden electronica; cheque; cuenta bancaria; apertura de cuenta; encargo interno; fondo "
            "para pagos en efectivo; caja chica; viaticos; retencion; devolucion; asignacion "
            "financiera; abono; abonado; cci; endeudamiento; deuda publica; deuda; prestamo; "
            "operacion de credito; operaciones de endeudamiento; concertar; concertacion; capacidad "
            "de pago; servicio de deuda; bonos soberanos; garantia del gobierno; fideicomiso; "
            "activos y pasivos; saldo de la deuda; entidad financiera; reprogramacion; pago; "
            "depositado"
        ),
    ),
    _Domain(
        anchors=(
            "contabilidad",
            "contabilidad publica",
            "cuenta general de la republica",
            "estados financieros",
        ),
        codes=("DGCP",),
        terms=_terms(
            "contabilidad; contable; estados financieros; estados presupuestarios; cuenta general "
            "de la republica; rendicion de cuentas; cierre contable; informacion financiera; nicsp; "
            "plan contable; plan contable gubernamental; registro contable; depreciacion; "
            "conciliacion; conciliacion de cuentas; saneamiento contable; notas a los estados "
            "financieros; integracion contable; asiento contable; contador; balance general; "
            "patrimonio; activo fijo; presentacion de informacion financiera; modulo contable; "
            "directiva de cierre; informacion presupuestaria y financiera; contador publico"
        ),
    ),
    _Domain(
        anchors=(
            "abastecimiento",
            "contrataciones del estado",
            "contrataciones publicas",
            "sistema nacional de abastecimiento",
        ),
        codes=("DGA", "DGABAST"),
        terms=_terms(
            "abastecimiento; contrataciones del estado; contratacion; contrato; ley de "
            "contrataciones; ley general de contrataciones publicas; ley 32069; ley 30225; "
            "procedimiento de seleccion; licitacion publica; licitacion; concurso publico; "
            "adjudicacion simplificada; subasta inversa; comparacion de precios; contratacion "
            "directa; buena pro; penalidad; penalidad por mora; adelanto directo; adelanto de "
            "materiales; garantia de fiel cumplimiento; garantia; proveedor; proveedores del "
            "estado; rnp; registro nacional de proveedores; seace; catalogo electronico; acuerdo "
            "marco; peru compras; ocho uit; 8 uit; orden de compra; orden de servicio; conformidad; "
            "expediente de contratacion; requerimiento; terminos de referencia; especificaciones "
            "tecnicas; cuadro multianual de necesidades; plan anual de contrataciones; bienes "
            "muebles; bienes patrimoniales; margesi; inventario patrimonial; alta de bienes; baja "
            "de bienes; almacen; siga; arbitraje; ampliacion de plazo; adicional de obra; "
            "resolucion de contrato; suscripcion del contrato; consorcio; postor; bases; compras"
        ),
    ),
    _Domain(
        anchors=("recursos humanos", "airhsp", "planillas", "gestion fiscal de los recursos humanos"),
        codes=("DGGFRH",),
        terms=_terms(
            "airhsp; registro centralizado de planillas; planilla; remuneracion; remunerativo; cts; "
            "compensacion por tiempo de servicios; escala remunerativa; pension; cesante; "
            "bonificacion; aguinaldo; escolaridad; gratificacion; incremento remunerativo; registro "
            "de plaza; plaza; cap; cas; contrato administrativo de servicios; personal; beneficios "
            "sociales; ley 20530; nombramiento; docente; codigo airhsp; plaza vacante; tope "
            "remunerativo; mcpp; modulo de control de pago de planillas; servidores; trabajadores; "
            "sueldo; haberes; ingresos del personal; deuda social; sentencias judiciales; reintegro"
        ),
    ),
    _Domain(
        anchors=("politica tributaria", "ingresos publicos", "tributos", "politica de ingresos"),
        codes=("DGPIP", "DGPI"),
        terms=_terms(
            "tributario; tributaria; tributo; impuesto; igv; impuesto general a las ventas; "
            "impuesto a la renta; renta de quinta categoria; renta de cuarta categoria; isc; "
            "impuesto selectivo al consumo; exoneracion; beneficio tributario; codigo tributario; "
            "arancel; aduanas; regimen mype tributario; detraccion; percepcion; uit; drawback; "
            "amazonia; sunat; impuesto predial; itf; impuesto temporal a los activos netos; tasa; "
            "gasto tributario"
        ),
    ),
    _Domain(
        anchors=(
            "asociaciones publico privadas",
            "obras por impuestos",
            "inversion privada",
            "promocion de la inversion privada",
        ),
        codes=("DGPPIP",),
        terms=_terms(
            "app; asociacion publico privada; asociaciones publico privadas; obras por impuestos; "
            "oxi; proinversion; iniciativa privada; concesion; cofinanciada; autofinanciada; "
            "proyectos en activos; cipril; cipgn; certificado de inversion publica; empresa "
            "privada; adenda; inversion privada; concesionario; convenio de inversion; empresa "
            "privada financie"
        ),
    ),
    _Domain(
        anchors=("descentralizacion fiscal", "canon", "transferencias a gobiernos subnacionales", "foncomun"),
        codes=("DGDFAS",),
        terms=_terms(
            "canon; sobrecanon; regalia; regalia minera; foncomun; fondo de compensacion municipal; "
            "transferencias; gobiernos locales; gobiernos regionales; recursos determinados; "
            "indices de distribucion; focam; participacion en rentas de aduanas; reglas fiscales; "
            "responsabilidad fiscal; canon minero; canon gasifero; fondo de compensacion; "
            "distribucion; transferido; subnacional; vaso de leche"
        ),
    ),
    _Domain(
        anchors=("siaf", "siaf sp", "siaf rp", "aplicativos informaticos", "sistemas informaticos"),
        codes=("OGTI",),
        terms=_terms(
            "siaf; siaf sp; siaf rp; modulo administrativo; usuario siaf; transmitir; transmision; "
            "expediente siaf; consulta amigable; contrasena; clave; acceso al sistema; error del "
            "sistema; no puedo ingresar; mensaje de error; soporte; version del siaf; actualizacion "
            "del siaf; aplicativo; sistema; ingresar al sistema; usuario; error; instalar; "
            "servidor; base de datos"
        ),
    ),
)

# Directive 5.2.1: trámite status, MEF services and access to its applications -> OGDAU.
_ADMINISTRATIVA_TERMS: tuple[str, ...] = _terms(
    "estado de mi tramite; estado del tramite; tramite; mi expediente; numero de expediente; "
    "expediente n; mi solicitud; mesa de partes; mesa de partes virtual; ventanilla electronica; "
    "seguimiento de tramite; consulta de tramites; cargo de recepcion; acceso a la informacion "
    "publica; ley 27806; ley de transparencia; transparencia y acceso a la informacion; solicitud "
    "de informacion; informacion publica; queja; reclamo; libro de reclamaciones; sugerencia; "
    "constancia; certificado de trabajo; horario de atencion; conectamef; centro de servicios; "
    "videoconferencia; cita; silencio administrativo; derivada; notificacion; casilla electronica; "
    "plataforma de atencion; costo de reproduccion; portal de transparencia; practicas "
    "preprofesionales; convocatoria; trabajar en el mef; atencion al usuario; copia; documento "
    "presentado; sede; direccion del ministerio; telefono del mef; respuesta a mi solicitud; "
    "registrado; adjuntar documentos"
)

_STOPWORD_TEXT = """a al algo algun alguna algunos ante antes aun bajo cada como con contra cual cuales cuando
    de del desde donde dos e el ella ellas ellos en entre era es esa ese eso esta este esto estos
    fue ha han has hasta hay la las le les lo los mas me mi mis muy nos nuestra nuestro o os otra
    otro para pero por porque que quien se segun ser si sin sobre su sus tambien te tiene tengo
    ti tu un una uno unos y ya yo the of and to in is for on it at by with this that be are
    estimado estimados senor senores saludo saludos buenos buenas dias tardes consulta consultas
    quisiera saber deseo conocer solicito agradecere indiquen favor mef ministerio economia
    finanzas puede pueden podria cual cuanto debo debe deben hacer mismo manera forma caso
    entidad municipalidad nuestra"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_TOKEN = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=16)
def normalize(text: str) -> str:
    """Lowercase, strip accents and turn punctuation into spaces.

    Cached: the rules and the model normalise the same subject and text of each consulta.
    """
    decomposed = unicodedata.normalize("NFKD", text.lower())
    without_accents = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_TOKEN.findall(without_accents))


@lru_cache(maxsize=8192)
def stem(word: str) -> str:
    """Stem a normalised Spanish word lightly: drop plurals, keep at most 6 letters."""
    if word.isdigit() or len(word) <= 3:
        return word
    for suffix in ("ciones", "siones"):
        if word.endswith(suffix):
            word = word[: -len(suffix) + 1] + "on"
            break
    else:
        if word.endswith("es") and len(word) > 5 and word[-3] not in "aeiou":
            word = word[:-2]
        elif word.endswith("s") and len(word) > 4:
            word = word[:-1]
    # A 6-letter prefix conflates presupuesto/presupuestaria, contable/contabilidad.
    return word[:6]


def stems(text: str) -> tuple[str, ...]:
    """Return the stems of the content words of ``text``."""
    return tuple(stem(word) for word in normalize(text).split() if word not in _STOPWORDS)


def _ngrams(words: tuple[str, ...]) -> frozenset[str]:
    grams: set[str] = set()
    for n in range(1, MAX_NGRAM + 1):
        for start in range(len(words) - n + 1):
            grams.add(" ".join(words[start : start + n]))
    return frozenset(grams)


@dataclass(frozen=True)
class _Index:
    """Per candidate (organo code or ADMINISTRATIVA): term (stem n-gram) -> weight, display form."""

    terms: dict[str, dict[str, tuple[float, str]]]
    valid_codes: frozenset[str]
    #: The same, inverted: term -> (candidate, weight, display form); a mail looks up its own
    #: n-grams (~300) instead of testing every term of every candidate (~900).
    by_term: dict[str, tuple[tuple[str, float, str], ...]]


@lru_cache(maxsize=32)
def _build_index(organos: tuple[OrganoTopics, ...]) -> _Index:
    raw = {organo.code: _organo_terms(organo) for organo in organos}
    raw[ADMINISTRATIVA] = {key: (VOCABULARY_WEIGHT, shown) for key, shown in _keyed(_ADMINISTRATIVA_TERMS)}
    weighted = _idf_weighted(raw)
    inverted: dict[str, list[tuple[str, float, str]]] = {}
    for code, terms in weighted.items():
        for key, (weight, shown) in terms.items():
            inverted.setdefault(key, []).append((code, weight, shown))
    return _Index(
        terms=weighted,
        valid_codes=frozenset(o.code for o in organos),
        by_term={key: tuple(entries) for key, entries in inverted.items()},
    )


def _keyed(terms: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(stemmed key, the term as shown) for each term that has a key."""
    for term in terms:
        key = " ".join(stems(term))
        if key:
            yield key, normalize(term)


def _organo_terms(organo: OrganoTopics) -> dict[str, tuple[float, str]]:
    """An órgano's terms: the vocabulary of its domains (first one wins), then its own topics, which
    weigh more and replace a vocabulary term of the same key."""
    topic_keys = {" ".join(stems(topic)) for topic in organo.topics}
    own: dict[str, tuple[float, str]] = {}
    for domain in _DOMAINS:
        anchors = {" ".join(stems(anchor)) for anchor in domain.anchors}
        if organo.code in domain.codes or anchors & topic_keys:
            for key, shown in _keyed(domain.terms):
                own.setdefault(key, (VOCABULARY_WEIGHT, shown))
    own.update({key: (TOPIC_WEIGHT, shown) for key, shown in _keyed(organo.topics)})
    return own


def _idf_weighted(raw: dict[str, dict[str, tuple[float, str]]]) -> dict[str, dict[str, tuple[float, str]]]:
    """IDF-like: a term shared by many candidates says little about any one of them; phrases weigh more."""
    document_frequency: dict[str, int] = {}
    for terms in raw.values():
        for key in terms:
            document_frequency[key] = document_frequency.get(key, 0) + 1
    candidates = len(raw)
    return {
        code: {
            key: (
                base
                * (math.log(1 + candidates / document_frequency[key]) / math.log(1 + candidates))
                * (1 + PHRASE_BONUS * key.count(" ")),
                shown,
            )
            for key, (base, shown) in terms.items()
        }
        for code, terms in raw.items()
    }


class Predictor(Protocol):
    """The learned model as the decision needs it (``routing.learning.Model``)."""

    @property
    def classes(self) -> tuple[str, ...]: ...

    def predict(self, subject: str, text: str) -> Prediction: ...


@dataclass(frozen=True)
class Prediction:
    """A model's best class (organo code or ADMINISTRATIVA), its runner-up and the score margin."""

    label: str
    runner_up: str
    margin: float


def classify(
    subject: str,
    text: str,
    organos: Sequence[OrganoTopics],
    *,
    tema: str | None = None,
    model: Predictor | None = None,
) -> Classification:
    """Classify a consulta; ``tema`` (the Telegram bot's choice) wins when it is valid.

    Without ``model``: the rules alone. With it, the decision (the rules stay the explanation):
    - rules confident and the model agrees (by ``MODEL_CONFIRM_MARGIN``): that class;
    - rules not confident: the model's class when its margin is at least ``MODEL_MARGIN`` (or
      ``MODEL_AGREE_MARGIN`` when it is the rules' own best candidate);
    - rules and model disagree, or neither is confident: OGDAU triages ("sin coincidencia
      confiable"), never a guess between two órganos;
    - a model class that is no longer an active organo is doubt too.
    """
    index = _build_index(tuple(organos))
    chosen = (tema or "").strip().upper()
    if chosen == ADMINISTRATIVA:
        return Classification("administrativa", None, "tema elegido por el usuario: ADMINISTRATIVA")
    if chosen in index.valid_codes:
        return Classification("tecnica", chosen, f"tema elegido por el usuario: {chosen}")
    ignored = f" (tema {chosen!r} desconocido, ignorado)" if chosen else ""
    rules = _score_rules(index, subject, text)
    if model is None:
        return _rules_outcome(rules, ignored)
    prediction = model.predict(subject, text)
    learned = prediction.label
    valid = learned == ADMINISTRATIVA or learned in index.valid_codes
    said = f"modelo {learned} margen {prediction.margin:.2f}"
    if rules.confident and rules.code == learned and prediction.margin >= MODEL_CONFIRM_MARGIN:
        return _outcome(learned, f"{_rules_reason(rules)}; {said}{ignored}")
    weak_agreement = rules.best > 0 and rules.code == learned and prediction.margin >= MODEL_AGREE_MARGIN
    if not rules.confident and valid and (prediction.margin >= MODEL_MARGIN or weak_agreement):
        return _outcome(learned, f"{said} (reglas: {_rules_detail(rules)}){ignored}")
    why = f"reglas {rules.code} {rules.best:.1f}, {said}" if rules.confident else _rules_detail(rules)
    if rules.confident:
        why = f"reglas y modelo no coinciden: {why}"
    elif valid:
        why = f"{why}; {said}"
    return Classification(
        "administrativa", None, f"sin coincidencia confiable, OGDAU clasifica: {why}{ignored}"
    )


@dataclass(frozen=True)
class _RulesScore:
    best: float
    code: str
    hits: list[tuple[float, str]]
    second: float
    second_code: str

    @property
    def confident(self) -> bool:
        return not (
            self.best < MIN_SCORE
            or self.best < self.second * MIN_RATIO
            or self.best - self.second < MIN_MARGIN
        )


def _score_rules(index: _Index, subject: str, text: str) -> _RulesScore:
    subject_grams = _ngrams(stems(subject))
    body_grams = _ngrams(stems(text))
    # Per candidate, per matched term: its points (in the subject it counts SUBJECT_WEIGHT times).
    points: dict[str, dict[str, float]] = {}
    for grams, factor in ((subject_grams, SUBJECT_WEIGHT), (body_grams, 1.0)):
        for gram in grams:
            for code, weight, shown in index.by_term.get(gram, ()):
                own = points.setdefault(code, {})
                own[shown] = own.get(shown, 0.0) + weight * factor
    scored: list[tuple[float, str, list[tuple[float, str]]]] = []
    for code in index.terms:
        hits = [(value, shown) for shown, value in points.get(code, {}).items()]
        scored.append((sum(value for value, _ in hits), code, hits))
    scored.sort(key=lambda item: (-item[0], item[1]))
    (best, code, hits), (second, second_code, _) = scored[0], scored[1]
    return _RulesScore(best, code, hits, second, second_code)


def _rules_detail(rules: _RulesScore) -> str:
    if not rules.best:
        return "ningún término reconocido"
    return f"mejor {rules.code} {rules.best:.1f} vs {rules.second_code} {rules.second:.1f}"


def _rules_reason(rules: _RulesScore) -> str:
    evidence = ", ".join(f"'{shown}' {points:.1f}" for points, shown in sorted(rules.hits, reverse=True)[:3])
    kind = "administrativa" if rules.code == ADMINISTRATIVA else f"tecnica {rules.code}"
    return f"{kind} {rules.best:.1f} ({evidence}) vs {rules.second_code} {rules.second:.1f}"


def _outcome(label: str, reason: str) -> Classification:
    if label == ADMINISTRATIVA:
        return Classification("administrativa", None, reason)
    return Classification("tecnica", label, reason)


def _rules_outcome(rules: _RulesScore, ignored: str) -> Classification:
    if not rules.confident:
        return Classification(
            "administrativa",
            None,
            f"sin coincidencia confiable, OGDAU clasifica: {_rules_detail(rules)}{ignored}",
        )
    return _outcome(rules.code, f"{_rules_reason(rules)}{ignored}")
