"""Progress bars of the commands: the ``progress`` callback the stages are given.

A stage reports lines (:mod:`dsm.progress`); :class:`Bars` turns the counted ones
(:class:`~dsm.progress.Step`) into one tqdm bar per task on stderr, with rate and ETA, and
prints the other lines (notes such as the anomaly gain chosen). Where it draws:

* a terminal: a live bar per task, notes and log records printed above it;
* not a terminal (a log file, a pipe, a batch job): no redrawn bars; each task leaves one line,
  its bar's final state (items, elapsed time, rate), when it ends;
* ``dsm -q``: nothing at all;
* ``dsm -v``: also the line of every step (a period trained, a time chunk written...).
"""

from __future__ import annotations

import io
import sys
from contextlib import ExitStack
from typing import IO, Any

import click
from tqdm import tqdm

from dsm.progress import Step


def _root_param(name: str) -> Any:
    ctx = click.get_current_context(silent=True)
    return ctx.find_root().params.get(name) if ctx is not None else None


def quiet() -> bool:
    """Whether the command runs under ``dsm -q`` (no progress lines or bars)."""
    return bool(_root_param("quiet"))


def verbose() -> bool:
    """Whether the command runs under ``dsm -v`` (or more): every step's line too."""
    return bool(_root_param("verbose"))


class Bars:
    """The progress callback of a command: one tqdm bar per task, notes printed.

    Parameters
    ----------
    quiet
        Print nothing.
    verbose
        Also print the line of every step.
    stream
        Where bars and lines go (default: stderr at the time of the call).
    tty
        Whether ``stream`` is a terminal (default: ``stream.isatty()``).

    Use it as a context manager: on exit the open bar is closed (its final line printed).
    """

    def __init__(self, quiet: bool = False, verbose: bool = False, stream: IO[str] | None = None,
                 tty: bool | None = None) -> None:
        self.quiet, self.verbose = quiet, verbose
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(self.stream.isatty()) if tty is None else tty
        self.bar: tqdm | None = None
        self.task: str | None = None
        self._stack = ExitStack()

    def __enter__(self) -> Bars:
        if self.tty and not self.quiet:
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._stack.enter_context(logging_redirect_tqdm())  # log records above the live bar
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self._stack.close()

    def __call__(self, line: str) -> None:
        """Take one progress line: a :class:`Step` moves its task's bar, other lines are printed."""
        if self.quiet:
            return
        if not isinstance(line, Step):
            self.note(line)
            return
        if self.verbose and line.n:
            self.note(line)
        if self.bar is None or self.task != line.task:
            self._open(line)
        bar = self.bar
        assert bar is not None
        if line.total is not None and line.total != bar.total:
            bar.total = max(line.total, bar.n + line.n)
            bar.refresh()
        if line.n:
            bar.update(line.n)
            if bar.total is not None and bar.n >= bar.total:  # the task is complete
                self.close()

    def note(self, line: str) -> None:
        """Print ``line`` (above the live bar on a terminal); nothing under quiet."""
        if self.quiet:
            return
        if self.bar is not None and self.tty:
            tqdm.write(line, file=self.stream)
        else:
            click.echo(line, file=self.stream)

    def close(self) -> None:
        """End the open bar: on a terminal it stays drawn; elsewhere its final state is printed."""
        bar, self.bar, self.task = self.bar, None, None
        if bar is None:
            return
        if self.tty:
            bar.close()
            return
        final = str(bar)
        bar.close()
        click.echo(final, file=self.stream)

    def _open(self, step: Step) -> None:
        self.close()
        self.task = step.task
        common: dict[str, Any] = {"desc": step.task, "total": step.total, "unit": f" {step.unit}",
                                  "unit_scale": False, "dynamic_ncols": True}
        if self.tty:
            self.bar = tqdm(file=self.stream, leave=True, **common)
        else:  # drawn nowhere; only its final state is printed (close)
            self.bar = tqdm(file=io.StringIO(), mininterval=3600.0, ascii=True, ncols=80, **common)


def bars() -> Bars:
    """The :class:`Bars` of the running command (its ``-q`` and ``-v`` options)."""
    return Bars(quiet=quiet(), verbose=verbose())
