"""Progress bars for long exports, imports and rebuilds: shown on a terminal, silent otherwise.

Cron jobs, CI logs and pipes get no escape codes; a person at a terminal sees how far along it is.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ProgressFn = Callable[[int, int], None]


@contextmanager
def progress_bar(description: str, *, enabled: bool | None = None) -> Iterator[ProgressFn]:
    """Yields ``update(done, total)``; a rich progress bar on stderr only if stderr is a TTY."""
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
