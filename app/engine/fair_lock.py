"""A lock that is granted in the order it was asked for.

``threading.Lock`` promises no order: a thread that releases it and asks again at once usually
wins, so one busy caller (a server answering request after request) could starve another (the
window's own chat) that shares the model process. Here each caller takes a ticket and waits until
its number comes up.
"""

from __future__ import annotations

import threading


class FairLock:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._next_ticket = 0  # the ticket the next caller gets
        self._serving = 0  # the ticket that may hold the lock now

    def acquire(self) -> None:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._cond.wait_for(lambda: self._serving == ticket)

    def release(self) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
