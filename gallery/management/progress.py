"""What every operations command shares: --quiet, a progress bar on a terminal, problems as exit codes.

The bar is drawn only when stdout is a terminal (a cron job's log or a pipe gets the
summary lines alone) and never with --quiet, which also silences everything but errors.
"""

from __future__ import annotations

import shutil
import time

from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import filesizeformat


class Progress:
    """A one-line bar: `label [#####.....] done/total  bytes`; redrawn at most 10 times a second."""

    def __init__(self, out, *, total: int | None, label: str, enabled: bool) -> None:
        self.out, self.total, self.label, self.enabled = out, total, label, enabled
        self.done = 0
        self.bytes = 0
        self._drawn_at = 0.0

    def advance(self, count: int = 1, *, nbytes: int = 0) -> None:
        self.done += count
        self.bytes += nbytes
        if self.enabled and time.monotonic() - self._drawn_at >= 0.1:
            self._draw()

    def _draw(self) -> None:
        self._drawn_at = time.monotonic()
        width = shutil.get_terminal_size((80, 20)).columns
        tail = f" {self.done}" + (f"/{self.total}" if self.total else "")
        if self.bytes:
            tail += f"  {filesizeformat(self.bytes)}"
        room = max(10, width - len(self.label) - len(tail) - 4)
        filled = int(room * min(1.0, self.done / self.total)) if self.total else 0
        self.out.write(f"\r{self.label} [{'#' * filled}{'.' * (room - filled)}]{tail}", ending="")
        self.out.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            self.out.write("")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OperationsCommand(BaseCommand):
    """A command with --quiet, a progress bar when stdout is a terminal, and `fail()` for problems."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument("--quiet", "-q", action="store_true", help="print errors only (no progress, no summary)")
        return parser

    def execute(self, *args, **options):
        self.quiet = options.get("quiet", False)
        return super().execute(*args, **options)

    def say(self, message: str) -> None:
        if not self.quiet:
            self.stdout.write(message)

    def progress(self, *, total: int | None, label: str) -> Progress:
        isatty = getattr(self.stdout, "isatty", lambda: False)
        return Progress(self.stdout, total=total, label=label, enabled=not self.quiet and bool(isatty()))

    def fail(self, message: str) -> None:
        """End with a non-zero exit status (1): the work ran, and found or met problems."""
        raise CommandError(message, returncode=1)
