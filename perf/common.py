"""Helpers shared by the benchmarks: environment pinning, machine facts, statistics, tables.

Nothing here imports numpy at module level: ``pin_blas_env()`` must be able to run before
numpy is first imported (OpenBLAS reads its variables once, when it loads).
"""
from __future__ import annotations

import ctypes
import datetime
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Iterable, Sequence

__all__ = ['BLAS_THREAD_VARS', 'SLOW_BLAS_VARS', 'MIN_RUN_S', 'pin_blas_env', 'blas_info', 'machine_info',
           'median', 'repeat_for', 'entry', 'format_value', 'format_table', 'as_jsonable']

#: Pinned to 1 so that neither the parent nor any worker starts a BLAS thread pool that
#: would compete with the pipeline's processes for the two cores.
BLAS_THREAD_VARS = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')
#: Set on some machines to force a conservative OpenBLAS kernel; measured to slow numpy,
#: so the benchmark runs without them.
SLOW_BLAS_VARS = ('OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE')
#: Shortest timed run (--quick included): a 37 ms run is mostly start-up, drain and timer
#: noise, and one scheduler hiccup on a shared 2-core machine moves it by 10%.
MIN_RUN_S = 0.5


def pin_blas_env() -> dict:
    """Pin BLAS thread pools to one thread and drop the variables that slow OpenBLAS.

    Works on ``os.environ``, so every child (multiprocessing spawn, subprocess, the
    Flow's workers) inherits it; call it before numpy is imported. Returns what was
    removed, for the report.

    >>> removed = pin_blas_env(); os.environ['OMP_NUM_THREADS']
    '1'
    """
    for var in BLAS_THREAD_VARS:
        os.environ[var] = '1'
    removed = {}
    for var in SLOW_BLAS_VARS:
        if var in os.environ:
            removed[var] = os.environ.pop(var)
    return removed


def _openblas_probe() -> dict | None:
    """Ask the OpenBLAS that numpy loaded which kernel it picked (no threadpoolctl needed).

    numpy's wheels bundle ``scipy_openblas`` whose symbols carry a ``scipy_`` prefix and a
    ``64_`` suffix; a system OpenBLAS uses the plain names. We try both.
    """
    import numpy  # noqa: F401  (loads the library we look for)
    try:
        with open('/proc/self/maps') as fp:
            libs = sorted({line.split()[-1] for line in fp if 'openblas' in line.lower() and '/' in line})
    except OSError:
        return None
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (('scipy_', '64_'), ('', '')):
            try:
                corename = getattr(lib, f'{prefix}openblas_get_corename{suffix}')
                config = getattr(lib, f'{prefix}openblas_get_config{suffix}')
                threads = getattr(lib, f'{prefix}openblas_get_num_threads{suffix}')
            except AttributeError:
                continue
            corename.restype = config.restype = ctypes.c_char_p
            threads.restype = ctypes.c_int
            return {'source': 'openblas symbols', 'library': os.path.basename(path),
                    'kernel': corename().decode(), 'config': config().decode(), 'threads': threads()}
    return None


def blas_info() -> dict:
    """Which BLAS numpy uses and which kernel it runs: via threadpoolctl when importable,
    else by asking OpenBLAS directly, else ``{'kernel': 'unknown'}``."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        import numpy  # noqa: F401
        for pool in threadpool_info():
            if pool.get('user_api') == 'blas':
                return {'source': 'threadpoolctl', 'library': pool.get('internal_api'),
                        'kernel': pool.get('architecture') or 'unknown', 'version': pool.get('version'),
                        'threads': pool.get('num_threads')}
    try:
        probed = _openblas_probe()
    except Exception:  # a probe must never cost the benchmark its result
        probed = None
    return probed or {'source': 'none', 'kernel': 'unknown'}


def machine_info() -> dict:
    """CPU count, Python, numpy and pyzmq versions, load, date, BLAS: what the figures of a
    run depend on, stored beside them."""
    import numpy
    import zmq
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'cpu_count': os.cpu_count(), 'cpus_usable': usable, 'loadavg_at_start': load,
        'python': sys.version.split()[0], 'implementation': platform.python_implementation(),
        'platform': platform.platform(), 'numpy': numpy.__version__,
        'pyzmq': zmq.__version__, 'libzmq': zmq.zmq_version(),
        'blas': blas_info(),
        'env': {v: os.environ.get(v) for v in BLAS_THREAD_VARS + SLOW_BLAS_VARS},
    }


def median(values: Iterable[float]) -> float:
    """Median of the repetitions (robust against one run disturbed by another process)."""
    return float(statistics.median(list(values)))


def repeat_for(once: Callable[[], int], min_seconds: float) -> tuple[float, float]:
    """Call ``once`` (which returns how many items it processed) back to back until
    ``min_seconds`` have passed; returns (items per second, seconds the run took).

    One timed run is then long enough to matter whatever the speed of the system: a
    workload of 10,000 documents takes 7 ms on the floor and 0.1 s through mp.Queue.

    >>> rate, seconds = repeat_for(lambda: 10, 0.01); seconds >= 0.01
    True
    """
    items = 0
    t0 = time.perf_counter()
    while True:
        items += once()
        seconds = time.perf_counter() - t0
        if seconds >= min_seconds:
            return items / seconds, seconds


def entry(label: str, value: float, unit: str, *, baseline: float | None = None,
          baseline_label: str | None = None, ratio: float | None = None, target: str | None = None,
          ok: bool | None = None, note: str | None = None) -> dict:
    """One figure of a benchmark's result, as stored in the JSON and printed in the table."""
    return {'label': label, 'value': value, 'unit': unit, 'baseline': baseline, 'baseline_label': baseline_label,
            'ratio': ratio, 'target': target, 'ok': ok, 'note': note}


def format_value(value: float | None, unit: str = '') -> str:
    """A figure for the table: docs/s with thousands separators, times with 2-3 digits."""
    if value is None:
        return ''
    if unit == 'bool':
        return 'true' if value else 'false'
    if unit == 'docs/s':
        return f'{value:,.0f} {unit}'
    if unit == 'x':
        return f'{value:.2f}x'
    if unit in ('us', 'ms'):
        return f'{value:,.1f} {unit}'
    if unit == 's':
        return f'{value:.3f} {unit}'
    return f'{value:,.2f} {unit}'.rstrip()


def figure_rows(figures: dict) -> list[tuple[str, ...]]:
    """(figure, value, baseline, ratio, target, pass/fail) cells of each ``entry``."""
    rows = []
    for key, e in figures.items():
        base = ''
        if e.get('baseline') is not None:
            base = f'{format_value(e["baseline"], e["unit"])} ({e.get("baseline_label") or "baseline"})'
        ratio = '' if e.get('ratio') is None else format_value(e['ratio'], 'x')
        verdict = '' if e.get('ok') is None else ('pass' if e['ok'] else 'FAIL')
        rows.append((e.get('label', key), format_value(e['value'], e['unit']), base, ratio,
                     e.get('target') or '', verdict))
    return rows


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells as aligned text; the first row is the header, the first column is
    left-aligned and the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        lines.append('  '.join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if k == 0:
            lines.append('  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def as_jsonable(obj: Any) -> Any:
    """Numbers, strings, lists and dicts only (numpy scalars become Python ones)."""
    if isinstance(obj, dict):
        return {str(k): as_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_jsonable(v) for v in obj]
    if hasattr(obj, 'item') and callable(obj.item):
        return obj.item()
    return obj
