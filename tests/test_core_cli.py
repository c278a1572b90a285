"""The ``consultas`` command as a newcomer meets it: every subcommand's help, ``deadline``, ``.env``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import build_parser, main

REPO = Path(__file__).resolve().parent.parent


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every runnable subcommand path, e.g. ("db", "upgrade"), ("deadline",)."""
    paths: list[tuple[str, ...]] = []
    for action in parser._actions:  # argparse offers no public walk over subparsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.extend(_command_paths(sub, (*prefix, name)) or [(*prefix, name)])
    return paths


COMMANDS = _command_paths(build_parser())


def test_the_command_set_is_the_documented_one() -> None:
    tops = {path[0] for path in COMMANDS}
    assert tops >= {
        "db", "deadline", "parse", "serve", "poll", "red", "classify", "worker", "outbox",
        "digest", "report", "reminders", "scheduler", "bot",
    }  # fmt: skip
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for path in COMMANDS:
        assert f"consultas {' '.join(path)}" in readme, f"README does not show `consultas {' '.join(path)}`"


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_subcommand_explains_itself(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: consultas {' '.join(path)}")
    assert len(shown.splitlines()) >= 3  # a usage line and at least one explained option


def _consultas(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # The issue's own example: after 16:30 on Wednesday -> presented Thursday, 10 working days on.
        (["--received", "2024-11-27T17:00:00-05:00"], {"presented": "2024-11-28", "due": "2024-12-13"}),
        # Without an offset the time is Lima's; 08:00 is before office hours -> that same day.
        (["--received", "2024-11-27T08:00:00"], {"presented": "2024-11-27", "due": "2024-12-12"}),
        # A decreed non-working day inside the count pushes the due date by one working day.
        (
            ["--received", "2024-11-27T17:00:00-05:00", "--non-working", "2024-12-02"],
            {"presented": "2024-11-28", "due": "2024-12-16"},
        ),
        # Five working days from Friday 29: Monday 2 ... Thursday 5 (9 December, a holiday, comes later).
        (
            ["--received", "2024-11-27T17:00:00-05:00", "--days", "5"],
            {"presented": "2024-11-28", "due": "2024-12-05"},
        ),
    ],
)
@pytest.mark.slow
def test_deadline_prints_the_presented_and_due_dates_as_json(
    args: list[str], expected: dict[str, str], tmp_path: Path
) -> None:
    result = _consultas("deadline", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected


@pytest.mark.slow
def test_deadline_refuses_a_bad_instant_in_one_line(tmp_path: Path) -> None:
    result = _consultas("deadline", "--received", "ayer por la tarde", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("consultas deadline: error:")


@pytest.mark.slow
def test_a_dot_env_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CONSULTAS_NON_WORKING_DAYS=2024-12-02,2024-12-03\n", encoding="utf-8")
    result = _consultas("deadline", "--received", "2024-11-27T17:00:00-05:00", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"presented": "2024-11-28", "due": "2024-12-17"}
    # The environment wins over the file, as pydantic-settings documents.
    overridden = _consultas(
        "deadline", "--received", "2024-11-27T17:00:00-05:00", cwd=tmp_path,
        env={"CONSULTAS_NON_WORKING_DAYS": ""},
    )  # fmt: skip
    assert json.loads(overridden.stdout) == {"presented": "2024-11-28", "due": "2024-12-13"}


# Options given twice: several values accumulate, a single value refuses the second ---------------


def _deadline_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, str]:
    assert main(["deadline", "--received", "2024-12-13T17:00:00-05:00", *args]) == 0
    result: dict[str, str] = json.loads(capsys.readouterr().out)
    return result


def test_a_repeated_non_working_option_counts_every_date(capsys: pytest.CaptureFixture[str]) -> None:
    repeated = _deadline_json(capsys, "--non-working", "2024-12-23", "--non-working", "2024-12-24")

    assert repeated == _deadline_json(capsys, "--non-working", "2024-12-23", "2024-12-24")
    assert repeated != _deadline_json(capsys, "--non-working", "2024-12-24")
    assert repeated != _deadline_json(capsys, "--non-working", "2024-12-23")


def test_repeated_non_working_options_match_the_same_days_set_in_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repeated = _deadline_json(capsys, "--non-working", "2024-12-23", "--non-working", "2024-12-24")
    monkeypatch.setenv("CONSULTAS_NON_WORKING_DAYS", "2024-12-23,2024-12-24")
    assert _deadline_json(capsys) == repeated


@pytest.mark.parametrize(
    "args",
    [
        ["deadline", "--received", "2024-11-27T17:00:00-05:00", "--days", "5", "--days", "10"],
        ["deadline", "--received", "2024-11-27T17:00:00-05:00", "--received", "2024-11-28T09:00:00"],
        ["report", "--quarter", "2024Q3", "--quarter", "2024Q4"],
        ["digest", "--date", "2024-12-02", "--date", "2024-12-03"],
        ["worker", "--threads", "2", "--threads", "8"],
        ["classify", "-", "--tema", "DGPP", "--tema", "ADMINISTRATIVA"],
    ],
    ids=lambda args: " ".join(args[:1] + [a for a in args if a.startswith("--")][-1:]),
)
def test_an_option_that_takes_one_value_given_twice_stops_the_command(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*args, "--help"])  # the second value stops the command before --help is reached

    assert exited.value.code == 2
    err = capsys.readouterr().err
    option = [a for a in args if a.startswith("--")][-1]
    assert f"argument {option}: given more than once" in err.splitlines()[-1]
    assert "Traceback" not in err


def _options(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[str, argparse.Action]]:
    found: list[tuple[str, argparse.Action]] = []
    for action in parser._actions:  # argparse offers no public walk over options
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _options(sub, (*path, name))
        elif action.option_strings and action.nargs != 0 and not isinstance(action, argparse._HelpAction):
            found.append((f"consultas {' '.join(path)} {action.option_strings[-1]}", action))
    return found


def test_no_option_of_any_command_keeps_only_its_last_value() -> None:
    from consultas.cliargs import Once

    options = _options(build_parser())
    assert len(options) >= 10
    silent = [
        name
        for name, action in options
        if not isinstance(action, (argparse._ExtendAction, argparse._AppendAction, Once))
    ]
    assert silent == []
