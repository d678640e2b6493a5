"""The cancelled request ids each side of the model process's pipe remembers."""

from __future__ import annotations

import threading
from collections import OrderedDict


class RecentIds:
    """A bounded, thread-safe set of request ids (the cancelled ones), on both sides of the pipe.

    Bounded because a long session sends many requests; the oldest ids go first, and a request
    older than the last ``capacity`` cancels is long over.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._ids: OrderedDict[int, None] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def add(self, request_id: int) -> None:
        with self._lock:
            self._ids[request_id] = None
            self._ids.move_to_end(request_id)
            while len(self._ids) > self._capacity:
                self._ids.popitem(last=False)

    def __contains__(self, request_id: object) -> bool:
        with self._lock:
            return request_id in self._ids
