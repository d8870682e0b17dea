"""The clock that ``post(timeout=...)`` and a hung instance's grace count.

The router runs in the caller's thread: while a callback runs, or the post reads an input
generator, nothing reads replies or moves requests on. That time is the caller's: counted,
a slow callback would fail requests answered in time and have a healthy executor ended as
hung (its state lost). So the clock stands still while the caller's code holds the thread,
except while that code pumps the router itself (a post inside a callback, an AsyncFlow
waiting for its input), and it never goes back.

Example
-------
>>> clock = CallerClock()
>>> clock.enter(); slow_callback(); clock.leave()   # the clock stood still meanwhile
>>> with clock.serviced():                           # pumping from inside caller code
...     router.pump(0.1)
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterator

__all__ = ['CallerClock']


class CallerClock:
    """Monotonic time, less the stretches the caller's code held the thread unpumped.

    Example
    -------
    >>> clock = CallerClock(); t0 = clock.now()
    >>> clock.enter(); time.sleep(0.5); clock.leave()
    >>> clock.now() - t0 < 0.5
    True
    """

    __slots__ = ('stalled', 'paused', 'depth')

    def __init__(self) -> None:
        self.stalled = 0.0  # the stretches that ended
        self.paused: float | None = None  # when the one going on began (None: none is)
        self.depth = 0  # how deep in the caller's code the thread is (posts inside callbacks)

    def now(self) -> float:
        paused = self.paused
        return (time.monotonic() if paused is None else paused) - self.stalled

    def enter(self) -> None:
        """The caller's code (a callback, reading its input) runs from now on."""
        self.depth += 1
        if self.paused is None:
            self.paused = time.monotonic()

    def leave(self) -> None:
        self.depth -= 1
        if not self.depth:
            self.resume()

    def resume(self) -> None:
        """Let the clock run (the router is pumped, or the caller's code is over)."""
        if self.paused is not None:
            self.stalled += time.monotonic() - self.paused
            self.paused = None

    def pause_if_inside(self) -> None:
        """After a pump: back in the caller's code, if it was pumped from there."""
        if self.depth:
            self.paused = time.monotonic()

    @contextlib.contextmanager
    def serviced(self) -> Iterator[None]:
        """Inside the caller's code, a wait during which the router is pumped now and then
        (an AsyncFlow waiting for its input to yield): the clock runs meanwhile."""
        depth, self.depth = self.depth, 0
        self.resume()
        try:
            yield
        finally:
            self.depth = depth
            self.pause_if_inside()
