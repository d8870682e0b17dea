"""Scale run: the demo over the standard library plus this environment's site-packages,
with the peak memory of the whole process tree (RSS and PSS) sampled while it runs.

Usage::

    python -m executors.scale [--workspace DIR] [--site-packages DIR] [--interval S]

Example
-------
>>> main(['--workspace', '/tmp/scale-ws'])  # doctest: +SKIP
0
"""
from __future__ import annotations

import argparse
import os
import site
import sys
import sysconfig
import tempfile
import threading
import time

import psutil

from . import demo

__all__ = ['main', 'TreeMemory']


class TreeMemory(threading.Thread):
    """Samples the summed RSS and PSS of this process and its children until ``stop()``.

    Example
    -------
    >>> m = TreeMemory(0.5); m.start(); ...; m.stop(); m.peak_rss  # doctest: +SKIP
    """

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak_rss, self.peak_pss = interval, 0, 0
        self._done = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self._done.is_set():
            rss = pss = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    info = p.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                rss += info.rss
                pss += getattr(info, 'pss', info.rss)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self._done.wait(self.interval)

    def stop(self) -> None:
        """Stop sampling and wait for the thread.

        Example
        -------
        >>> m.stop()  # doctest: +SKIP
        """
        self._done.set()
        self.join()


def _du(path: str) -> int:
    total = 0
    for top, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(top, f)).st_blocks * 512
            except OSError:
                pass
    return total


def main(argv: list[str] | None = None) -> int:
    """Run the scale measurement; returns the exit code.

    Example
    -------
    >>> main([])  # doctest: +SKIP
    0
    """
    ap = argparse.ArgumentParser(prog='python -m executors.scale', description=__doc__.split('\n\n')[0])
    ap.add_argument('--workspace', default='workspace-scale')
    ap.add_argument('--site-packages', default=next((p for p in site.getsitepackages() if 'site-packages' in p), None))
    ap.add_argument('--interval', type=float, default=0.5, help='memory sampling period in seconds')
    args = ap.parse_args(argv)
    root = tempfile.mkdtemp(prefix='shmflow-scale-root-')
    # One root over both trees (links are followed once); 'site-packages' is a skipped name.
    os.symlink(sysconfig.get_paths()['stdlib'], os.path.join(root, 'stdlib'))
    os.symlink(args.site_packages, os.path.join(root, 'installed'))
    mem = TreeMemory(args.interval)
    mem.start()
    t0 = time.perf_counter()
    try:
        code = demo.main(['--path', root, '--pattern', '**/*.py', '--workspace', args.workspace, '--reindex',
                          '--profile', '--query', 'send mail', '--query', 'compress data',
                          '--query', 'parse command line arguments'])
    finally:
        mem.stop()
        for name in ('stdlib', 'installed'):
            os.unlink(os.path.join(root, name))
        os.rmdir(root)
    wall = time.perf_counter() - t0
    sizes = {name: _du(os.path.join(args.workspace, name)) for name in (demo.SPARSE, demo.LSA, demo.DENSE)}
    print(f'\nscale run: {wall:.1f} s wall; peak tree RSS {mem.peak_rss / 2**20:,.0f} MiB, '
          f'PSS {mem.peak_pss / 2**20:,.0f} MiB (sampled every {args.interval} s)')
    print('index on disk: ' + ', '.join(f'{k} {v / 2**20:,.1f} MiB' for k, v in sizes.items())
          + f'; total {sum(sizes.values()) / 2**20:,.1f} MiB')
    return code


if __name__ == '__main__':
    sys.exit(main())
