"""Errors that stop an audit before it can run (exit code 2).

Each carries the file it is about and a one-line, human diagnostic; the CLI prints
``auditor: error: <file>: <problem>`` and exits 2 without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class AuditorError(Exception):
    """Could not audit: bad arguments, unreadable or malformed input, bad policy."""

    def __init__(self, problem: str, path: str | Path | None = None, line: int | None = None):
        self.problem = " ".join(str(problem).split())  # always one line
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(self.diagnostic())

    def diagnostic(self) -> str:
        where = ""
        if self.path:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        return f"{where}{self.problem}"


class PolicyError(AuditorError):
    """The policy file is invalid (unknown check, wrong type, unknown field, broken YAML)."""


class InputError(AuditorError):
    """A dataset or model file cannot be used."""
