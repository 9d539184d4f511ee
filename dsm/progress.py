"""How a long stage reports its progress to whoever called it.

The stages (:func:`dsm.stages.train.train`, :func:`dsm.stages.predict.predict`,
:func:`dsm.stages.validate.validate`, :func:`dsm.chain.run`) take an optional ``progress`` callback that
receives lines (``str``). A line that finishes items of a counted task (a period trained, the
days of a time chunk written, a COG exported) is a :class:`Step`: still a ``str`` (so a callback
that prints or logs lines prints it unchanged), which also says which task moved, by how many
items, out of how many. The command line draws one progress bar per task from the steps
(:mod:`dsm.cli.bars`); the stages themselves never print or draw anything.
"""

from __future__ import annotations

from collections.abc import Callable


def bar_disabled(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a bar that ``progress`` asks for: off when not asked, else None
    (tqdm's own check: off on a stream that is not a terminal, so a log or a pod's output gets
    the stage's summary line rather than a bar redrawn in it)."""
    return None if progress else True


class Step(str):
    """A progress line that also counts items of a task.

    Parameters
    ----------
    line
        The line itself (what a callback that prints lines prints).
    task
        The task the items belong to (``"train"``, ``"predict"``...): one progress bar each.
    n
        Items finished by this step; 0 announces the task (its bar starts at 0).
    total
        Items of the whole task, None when unknown. A later step may give a larger total.
    unit
        What an item is (``"period"``, ``"day"``, ``"COG"``...).
    """

    task: str
    n: int
    total: int | None
    unit: str

    def __new__(cls, line: str, task: str, n: int = 1, total: int | None = None, unit: str = "item") -> Step:
        self = super().__new__(cls, line)
        self.task, self.n, self.total, self.unit = task, n, total, unit
        return self


class Steps:
    """The counted items of one task, reported as :class:`Step` lines to ``say``.

    Parameters
    ----------
    say
        The stage's progress callback (lines).
    task, total, unit
        As in :class:`Step`; ``total`` may grow (:meth:`grow`).
    """

    def __init__(self, say: Callable[[str], None], task: str, total: int | None, unit: str) -> None:
        self.say, self.task, self.total, self.unit = say, task, total, unit
        self.done = 0

    def start(self, line: str | None = None) -> None:
        """Announce the task (a step of 0 items), so that its bar measures time from now."""
        count = "" if self.total is None else f"{self.total} {self.unit}(s)"
        self.say(Step(line or f"{self.task}: {count}".rstrip(": "), self.task, 0, self.total, self.unit))

    def step(self, line: str, n: int = 1) -> None:
        """Report ``n`` more items finished, with the line that says what they were."""
        self.done += n
        if self.total is not None and self.done > self.total:
            self.total = self.done
        self.say(Step(line, self.task, n, self.total, self.unit))

    def grow(self, more: int) -> None:
        """Count ``more`` items into the task's total (learned once the task runs)."""
        self.total = (self.total or 0) + more
