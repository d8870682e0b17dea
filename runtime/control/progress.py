"""The progress bar of ``post(..., show_progress=True)``: the only thing the library prints."""
from __future__ import annotations

import sys
import time

from tqdm import tqdm

__all__ = ['Progress']


class Progress:
    """Counts requests and documents on a tqdm bar (stderr) and ends with one summary line.

    Example
    -------
    >>> p = Progress('/index', total_docs=100)
    >>> p.update(10); p.close()  # doctest: +SKIP
    """

    def __init__(self, endpoint: str, total_docs: int | None = None, file=None) -> None:
        self.file = file or sys.stderr
        self.requests = 0
        self.docs = 0
        self.t0 = time.perf_counter()
        self.bar = tqdm(total=total_docs, unit='doc', desc=endpoint, file=self.file, leave=False,
                        dynamic_ncols=True, mininterval=0.1)

    def update(self, ndocs: int) -> None:
        """One more request done, holding ``ndocs`` documents."""
        self.requests += 1
        self.docs += ndocs
        self.bar.update(ndocs)
        self.bar.set_postfix_str(f'{self.requests} requests', refresh=False)

    def close(self) -> None:
        """Remove the bar and print the final line."""
        self.bar.close()
        elapsed = time.perf_counter() - self.t0
        rate = self.docs / elapsed if elapsed > 0 else 0.0
        self.file.write(f'{self.bar.desc}: {self.requests} requests, {self.docs} docs done in '
                        f'{elapsed:.2f} s ({rate:,.0f} docs/s)\n')
        self.file.flush()
