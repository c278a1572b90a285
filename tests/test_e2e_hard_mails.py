"""The hard mails through the running service: `consultas serve` on a Maildir, the Red loaded.

One service for the module (started once: it takes seconds); each test drops its mails in the
Maildir and waits, with a deadline, for what the service writes to ``CONSULTAS_VAR_DIR/outbox``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.e2e_support import consultas, drop_mail, stop, written_mails

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MAILS = ROOT / "tests" / "fixtures" / "mails"
DEADLINE_S = 40.0
CONFIRMATION = "Su consulta ha sido registrada"
SUBSANACION = "Complete los requisitos de su consulta"


class Service:
    def __init__(self, var_dir: Path, process: subprocess.Popen[str]) -> None:
        self.var_dir = var_dir
        self.process = process
        self.dropped = 0

    def drop(self, raw: bytes) -> None:
        self.dropped += 1
        drop_mail(self.var_dir, raw, f"{self.dropped}.eml")

    def wait_for(self, wanted: Callable[[EmailMessage], bool]) -> EmailMessage:
        outbox = self.var_dir / "outbox"
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stdout.read() if self.process.stdout else ""
            for path in written_mails(outbox):
                mail = message_from_bytes(path.read_bytes(), policy=policy.default)
                assert isinstance(mail, EmailMessage)
                if wanted(mail):
                    return mail
            time.sleep(0.1)  # polling a folder the service writes, with a deadline
        pytest.fail("the expected mail was not written within the deadline")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    import os

    base = tmp_path_factory.mktemp("hard-mails")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTAS_")}
    env["CONSULTAS_VAR_DIR"] = str(base / "var")
    env["PYTHONPATH"] = str(ROOT)
    assert consultas("db", "upgrade", env=env).returncode == 0
    imported = consultas("red", "import", str(ROOT / "docs" / "red.example.yaml"), env=env)
    assert imported.returncode == 0, imported.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=base,
    )
    yield Service(base / "var", process)
    if process.poll() is None:
        stop(process)


def _to(address: str, subject: str) -> Callable[[EmailMessage], bool]:
    def wanted(mail: EmailMessage) -> bool:
        return address in str(mail["To"]) and subject in str(mail["Subject"])

    return wanted


def _body(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def test_a_forwarded_consulta_is_admitted_under_the_citizens_name_and_document(service: Service) -> None:
    service.drop((MAILS / "forwarded_office_traslado.eml").read_bytes())

    confirmation = service.wait_for(_to("rosa.huaman.ccori@gmail.com", CONFIRMATION))

    body = _body(confirmation)
    assert "Estimado(a) Rosa Elvira Huamán Ccori:" in body
    assert "Documento de identidad: DNI 41234567" in body
    assert "Mesa de Partes" not in body.split("Consulta:")[0]
    assert "mesadepartes@munisapallanga.gob.pe" in str(confirmation["Cc"])


def test_a_forwarded_mail_is_confirmed_to_the_citizen_of_its_quoted_from(service: Service) -> None:
    service.drop((MAILS / "forwarded_gmail_inline.eml").read_bytes())

    confirmation = service.wait_for(_to("rosa.quispe.m@hotmail.com", CONFIRMATION))

    body = _body(confirmation)
    assert "Nombres y apellidos: Rosa Quispe Mamani" in body
    assert "DNI 40321987" in body
    assert "pension de viudez" in body
    assert "les reenvío" not in body


@pytest.mark.parametrize(
    ("fixture", "address", "shown"),
    [
        ("name_opens_text.eml", "rquispe1978@yahoo.es", "Nombres y apellidos: Rosa Quispe Mamani"),
        (
            "outlook_encoded_comma_from.eml",
            "maria.pena.flores@outlook.com",
            "Nombres y apellidos: María Peña Flores",
        ),
        ("other_alphabets_utf8.eml", "anna.volkova@example.ru", "Какие налоги платит иностранная компания"),
        (
            "gb2312_label_gbk_bytes.eml",
            "li.weizhang@example.cn",
            "我们镕达贸易有限公司想从中国进口纺织品到秘鲁",
        ),
        ("banner_before_headers.eml", "jorge.salas.v@example.pe", "Nombres y apellidos: Jorge Salas Vilca"),
    ],
)
def test_each_hard_mail_is_admitted_at_once(service: Service, fixture: str, address: str, shown: str) -> None:
    service.drop((MAILS / fixture).read_bytes())

    confirmation = service.wait_for(_to(address, CONFIRMATION))

    assert shown in _body(confirmation)


#: The first mail of each bottom-posting citizen (missing what the fixture's answer gives).
FIRST_MAILS = {
    "bottom_posted_gmail_es.eml": (
        "Rosa Quispe Mamani <rosa.quispe.m@gmail.com>",
        "Buenos días, quisiera hacer una consulta.\n\nAtentamente,\nRosa Quispe Mamani\n",
    ),
    "bottom_posted_en.eml": (
        "Daniel Foster <dan.foster@example.com>",
        "Hola.\n",
    ),
    "bottom_posted_thunderbird_de.eml": (
        "Jürgen Weiß <juergen.weiss@example.de>",
        "Hola, mi nombre es Jürgen Weiß, celular +51 987 222 333.\n",
    ),
}


@pytest.mark.parametrize("fixture", sorted(FIRST_MAILS))
def test_a_bottom_posted_subsanacion_answer_completes_the_consulta(service: Service, fixture: str) -> None:
    sender, text = FIRST_MAILS[fixture]
    address = sender.split("<")[1].rstrip(">")
    first = EmailMessage()
    first["From"] = sender
    first["To"] = "consultas@mef.gob.pe"
    first["Subject"] = "consulta"
    first["Message-ID"] = f"<first-{fixture}@example.pe>"
    first.set_content(text)
    service.drop(first.as_bytes())
    asked = service.wait_for(_to(address, SUBSANACION))
    reference = re.search(r"\[(REF-\d+)\]", str(asked["Subject"]))
    assert reference is not None
    answer = (MAILS / fixture).read_bytes()
    answer = re.sub(rb"<subsanacion\.\d+@consultas\.mef\.gob\.pe>", str(asked["Message-ID"]).encode(), answer)
    answer = re.sub(rb"REF-\d+", reference.group(1).encode(), answer)

    service.drop(answer)

    confirmation = service.wait_for(_to(address, CONFIRMATION))
    body = _body(confirmation)
    question = body.split("Consulta:\n", 1)[1]
    assert "escribió" not in question and "wrote" not in question and "schrieb" not in question
    expected = {
        "bottom_posted_gmail_es.eml": "Quiero saber si la municipalidad puede pagar a los obreros",
        "bottom_posted_en.eml": "una empresa extranjera que vende software",
        "bottom_posted_thunderbird_de.eml": "Muss ich für die Einfuhr meines gebrauchten Fahrrads",
    }[fixture]
    assert expected in question
