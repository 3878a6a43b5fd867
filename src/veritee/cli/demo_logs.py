"""veritee's INFO log lines, shown indented under the demo's steps."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

__all__ = ["show_logs"]


class _Lines(logging.Handler):
    def __init__(self, console: Console, keep: Callable[[logging.LogRecord], bool]) -> None:
        super().__init__(logging.INFO)
        self.console = console
        self.keep = keep

    def emit(self, record: logging.LogRecord) -> None:
        if self.keep(record):
            self.console.print(f"  [dim]{escape(record.name)}:[/dim] {escape(record.getMessage())}")


@contextmanager
def show_logs(
    console: Console,
    names: Sequence[str],
    keep: Callable[[logging.LogRecord], bool] = lambda record: True,
) -> Iterator[None]:
    """While inside, the INFO lines of the loggers ``names`` that ``keep`` accepts are printed
    on ``console``; the loggers' levels are restored afterwards."""
    handler = _Lines(console, keep)
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
