"""What an executor's actor takes over from the script: its current directory and the
environment variables it changed since this process connected to Ray.

A local worker process starts with the script's cwd and ``os.environ`` of the moment its
Flow starts. A Ray worker inherits both from the raylet, that is, from the moment Ray
started: a second Flow that joins a private Ray (or a script that ``chdir``-ed or set
``MODEL_DIR`` after connecting) would give its executors stale ones. So each actor gets,
as a constructor argument (a few hundred bytes), the script's cwd and the variables it
changed since the connection was made, and applies them before its class is loaded.

A variable changes in the actor only where the actor still holds the value the script
had when it connected: one that Ray (``CUDA_VISIBLE_DEVICES``, ``OMP_NUM_THREADS``),
``runtime_env`` or ``add(..., env=...)`` set for the actor stays theirs. The cwd is taken
only on this machine (another node has other directories); ``RAY_*`` variables configure
Ray itself, set up already where the actor runs, and are left out.

This module imports no Ray.

Example
-------
>>> ctx = script_context(baseline)      # in the Flow's process, at its start
>>> adopt(ctx)                          # in the actor, before its executor is built
"""
from __future__ import annotations

import os
import socket

__all__ = ['script_context', 'adopt', 'machine_id']


def machine_id() -> str:
    """What tells this machine (this boot of it) from another one: a Ray node on it
    sees the same directories."""
    try:
        with open('/proc/sys/kernel/random/boot_id', encoding='ascii') as fp:
            boot = fp.read().strip()
    except OSError:  # not Linux: the host name alone
        boot = ''
    return f'{socket.gethostname()}/{boot}'


def script_context(baseline: dict) -> tuple[str, str, dict]:
    """``(machine, cwd, changes)`` of the script now: ``changes`` maps each variable it
    set, changed or removed since ``baseline`` (``os.environ`` when it connected to Ray)
    to ``(value then, value now)``, None for absent.

    Example
    -------
    >>> os.environ['MODEL_DIR'] = '/models/v2'
    >>> script_context({})[2]['MODEL_DIR']
    (None, '/models/v2')
    """
    now = os.environ
    changes = {k: (baseline.get(k), now.get(k)) for k in {*baseline, *now}
               if baseline.get(k) != now.get(k) and not k.startswith('RAY_')}
    return machine_id(), os.getcwd(), changes


def adopt(context: tuple[str, str, dict] | None) -> None:
    """Take the script's cwd (on its machine, where it exists) and its changed variables
    (where this process still holds the value the script changed).

    Example
    -------
    >>> adopt(('host/boot', '/home/me/project', {'MODEL_DIR': (None, '/models/v2')}))
    """
    if not context:
        return
    machine, cwd, changes = context
    if machine == machine_id():
        try:
            os.chdir(cwd)
        except OSError:  # removed since, or not ours to enter: the raylet's stays, as before
            pass
    for key, (then, now) in changes.items():
        if os.environ.get(key) != then:
            continue  # set for this actor (by Ray, runtime_env or env=): theirs wins
        if now is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = now
