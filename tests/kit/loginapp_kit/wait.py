"""Bounded polling: a test that waits for a state gives up, with what it last saw."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 2.0,
             errors: tuple[type[BaseException], ...] = ()) -> T | None:  # fmt: skip
    """Call ``predicate`` until it returns something truthy or ``timeout`` seconds pass.

    Returns the last value (falsy on timeout), so callers assert on it and the
    failure shows what was seen. Exceptions listed in ``errors`` count as a
    falsy answer (e.g. a manager without quorum refusing a command).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except errors:
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
