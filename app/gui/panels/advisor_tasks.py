"""The newest background task of each kind, for a widget: starting one cancels the one before, whose
answer is then dropped, and after ``close()`` (or once the widget is gone) nothing is delivered.

A thin layer over :func:`app.gui.workers.run_task` so the Advisor's and the quantization panel's
callbacks never touch a replaced request's result or a deleted widget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject

from app.gui.workers import Task, TaskFn, run_task


class LatestTasks:
    def __init__(self, owner: QObject) -> None:
        self.owner = owner
        self._tasks: dict[str, Task] = {}
        self._closed = False

    def run(
        self,
        kind: str,
        fn: TaskFn,
        *,
        on_done: Callable[[Any], None],
        on_failed: Callable[[str, str], None] | None = None,
    ) -> None:
        """Start ``fn`` as the one task of ``kind``; ``on_failed`` never hears of a cancel."""
        import shiboken6

        self.cancel(kind)
        if self._closed:
            return
        task: Task | None = None

        def current() -> bool:
            if self._tasks.get(kind) is not task or not shiboken6.isValid(self.owner):
                return False
            del self._tasks[kind]
            return True

        def done(result: Any) -> None:
            if current():
                on_done(result)

        def failed(message: str, hint: str, cancelled: bool) -> None:
            if current() and not cancelled and on_failed is not None:
                on_failed(message, hint)

        task = self._tasks[kind] = run_task(fn, on_done=done, on_failed=failed, name=kind)

    def running(self, kind: str) -> bool:
        return kind in self._tasks

    def cancel(self, kind: str) -> None:
        task = self._tasks.pop(kind, None)
        if task is not None:
            task.cancel()

    def close(self) -> None:
        """Cancel everything and deliver nothing more (call it from the widget's ``shutdown``)."""
        self._closed = True
        for kind in list(self._tasks):
            self.cancel(kind)
