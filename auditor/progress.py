"""Progress on stderr: a live bar on a terminal, one plain line per check otherwise (CI logs)."""

from __future__ import annotations

from auditor.report import CheckResult


class ConsoleProgress:
    def __init__(self, quiet: bool = False):
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet
        self._progress = None
        self._task = None
        self._index = 0
        self._total = 0

    def __enter__(self) -> "ConsoleProgress":
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(), console=self.console, transient=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def status(self, text: str):
        """A transient spinner on a terminal (gone before any error line), nothing otherwise."""
        import contextlib

        if self.live:
            return self.console.status(text)
        return contextlib.nullcontext()

    def start(self, check_id: str, index: int, total: int) -> None:
        self._index, self._total = index, total
        if self._progress is not None:
            if self._task is None:
                self._task = self._progress.add_task(check_id, total=total)
            self._progress.update(self._task, description=check_id, completed=index)

    def step(self, message: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=message)

    def done(self, result: CheckResult) -> None:
        line = f"[{self._index + 1}/{self._total}] {result.id}: {result.status} ({result.duration_s:.1f}s)"
        if self._progress is not None:
            self._progress.update(self._task, completed=self._index + 1)
            self._progress.console.print(line)
        elif not self.quiet:
            self.console.print(line)
