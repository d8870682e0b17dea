"""What Linux's /proc tells of a process's signal dispositions.

Python's ``signal.getsignal`` lists the handlers Python set; the kernel's masks say what
the process really does with a signal, whoever set it (C code may put the default back
under a handler Python still lists), and they can be read for another process too.

Example
-------
>>> import os, signal
>>> takes_signal(os.getpid(), signal.SIGINT)   # Python's KeyboardInterrupt handler
True
"""
from __future__ import annotations

__all__ = ['takes_signal']


def takes_signal(pid: int, signum: int) -> bool | None:
    """Whether process ``pid`` catches or ignores ``signum`` (its ``SigCgt`` / ``SigIgn``
    masks) rather than taking its default action; None where /proc cannot tell.

    Example
    -------
    >>> takes_signal(1, 15) in (True, False, None)
    True
    """
    try:
        with open(f'/proc/{pid}/status', encoding='ascii') as fp:
            masks = [int(line.split()[1], 16) for line in fp if line.startswith(('SigIgn:', 'SigCgt:'))]
    except (OSError, ValueError, IndexError):
        return None
    if len(masks) != 2:
        return None
    return any(m >> (signum - 1) & 1 for m in masks)
