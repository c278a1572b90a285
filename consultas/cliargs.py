"""How options of the ``consultas`` commands take values: no option silently keeps only its last one.

An option that takes several values accumulates them (``--non-working A --non-working B`` is
``--non-working A B``): `REPEATABLE`. An option that takes one value refuses to be given twice
(``--days 5 --days 10`` is an error naming the option, not 10 without a word): `Once`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

#: ``add_argument`` keywords of an option that takes one or more values and may be repeated.
REPEATABLE: dict[str, Any] = {"action": "extend", "nargs": "+"}


class Once(argparse.Action):
    """Store the option's value; giving the option a second time stops the command (exit code 2)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        # Kept on the namespace, not the action: a parser may parse several command lines.
        given: set[str] = namespace.__dict__.setdefault("_options_given", set())
        if self.dest in given:
            option = "/".join(self.option_strings)
            parser.error(f"argument {option}: given more than once; it takes one value")
        given.add(self.dest)
        setattr(namespace, self.dest, values)
