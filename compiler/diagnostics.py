"""Errors a user can act on.

Every error bertc raises for bad input is a ``BertcError``: one paragraph that
names the file, op (with its TF node name) or option, and says what to do.
The CLI prints it without a traceback and exits with ``exit_code``.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class BertcError(Exception):
    """A problem with the user's input or request: exit code 2."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message}\n{hint}")


class VerificationFailed(BertcError):
    """The compiled artifact does not match the source model: exit code 1."""

    exit_code = 1


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
