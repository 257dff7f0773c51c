"""Ordered results with a bounded number of tasks in flight (memory stays bounded)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
H = TypeVar("H")
DEFAULT_WINDOW = 4  # partitions in flight per worker: enough to keep workers busy, bounded


def ordered_window(
    submit: Callable[[T], H], wait: Callable[[H], R], items: Iterable[T], window: int
) -> Iterator[R]:
    """Submit items, keeping at most ``window`` in flight, and yield results in order."""
    pending: deque[H] = deque()
    for item in items:
        if len(pending) >= window:
            yield wait(pending.popleft())
        pending.append(submit(item))
    while pending:
        yield wait(pending.popleft())
