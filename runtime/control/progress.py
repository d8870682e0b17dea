"""The progress bar of ``post(..., show_progress=True)``: the only thing the library prints."""
from __future__ import annotations

import sys
import time

__all__ = ['Progress']


class Progress:
    """Counts the post's *input* documents on a tqdm bar (stderr), done and failed apart,
    and ends with one summary line.

    The bar measures the input: an executor that keeps half the documents, or splits each
    into three, does not move it past or short of the total; the documents that came out
    are counted on their own and shown when they differ.

    Example
    -------
    >>> p = Progress('/index', total_docs=100)
    >>> p.update(10, failed=False, docs_out=10); p.close()  # doctest: +SKIP
    """

    def __init__(self, endpoint: str, total_docs: int | None = None, file=None) -> None:
        self.file = file or sys.stderr
        self.requests = self.failed_requests = 0
        self.done = self.failed = self.out = 0
        from tqdm import tqdm  # here, not at import: a Flow that never shows progress never loads it
        self.t0 = time.perf_counter()
        self.bar = tqdm(total=total_docs, unit='doc', desc=endpoint, file=self.file, leave=False,
                        dynamic_ncols=True, mininterval=0.1)

    def update(self, ndocs: int, failed: bool = False, docs_out: int | None = None) -> None:
        """One more request over: it held ``ndocs`` input documents and (if it succeeded)
        gave back ``docs_out``."""
        self.requests += 1
        if failed:
            self.failed_requests += 1
            self.failed += ndocs
        else:
            self.done += ndocs
            self.out += ndocs if docs_out is None else docs_out
        self.bar.update(ndocs)
        self.bar.set_postfix_str(self._counts(), refresh=False)

    def _counts(self) -> str:
        text = f'{self.requests} requests'
        if self.failed:
            text += f', {self.failed} docs failed'
        if self.out != self.done:
            text += f', {self.out} docs out'
        return text

    def close(self) -> None:
        """Remove the bar and print the final line."""
        self.bar.close()
        elapsed = time.perf_counter() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        line = f'{self.bar.desc}: {self.requests} requests, {self.done} docs done'
        if self.failed:
            line += f', {self.failed} docs failed ({self.failed_requests} requests)'
        if self.out != self.done:
            line += f', {self.out} docs out'
        self.file.write(f'{line} in {elapsed:.2f} s ({rate:,.0f} docs/s)\n')
        self.file.flush()
