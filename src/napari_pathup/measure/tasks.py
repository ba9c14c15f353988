"""The progress/cancel interface a measuring task is given (the widgets pass a Qt-signal one)."""

from __future__ import annotations

from typing import Protocol


class TaskCancelledError(Exception):
    """Raised inside a task (by its ``TaskProgress``) once the user has pressed Cancel."""


class TaskProgress(Protocol):
    """``progress`` reports (and checks for Cancel), ``check`` only checks."""

    def check(self) -> None: ...

    def progress(self, done: int, total: int, description: str) -> None: ...


class NoProgress:
    """A ``TaskProgress`` for headless callers: reports nothing, never cancels."""

    def check(self) -> None:
        return None

    def progress(self, done: int, total: int, description: str) -> None:
        return None
