"""Where the relative paths of a Jina 2 YAML config lead, and importing its ``py_modules``.

A relative path in a config (``uses: pods/encode.yml``, ``py_modules: [pods/encode.py]``)
is looked up in the config's own folder first, then in the current directory: Jina 2.0.24
(``jaml/helper.py`` ``complete_path``) found it in either, so a project whose configs name
files from its root (``flows/index.yml`` saying ``uses: pods/encode.yml``, run from the
root) loads as it did. When neither has it, the error names every place looked in.

Example
-------
>>> find_file('pods/encode.py', '/project/flows')  # doctest: +SKIP
('/project/pods/encode.py', ['/project/flows/pods/encode.py', '/project/pods/encode.py'])
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from typing import Any, Iterable

__all__ = ['PyModuleImportError', 'find_file', 'not_found', 'import_py_modules', 'py_modules_paths',
           'absolute_py_modules', 'uses_path']

#: Files imported by ``import_py_modules``, by real path: each once per process.
_imported: dict[str, Any] = {}


class PyModuleImportError(ImportError):
    """A ``py_modules`` entry that raised while it was imported: the message names the
    file (``path``) or module (``name``), and ``__cause__`` is what it raised, with the
    module's traceback. ``executor`` is the executor it was listed for, once known.

    Example
    -------
    >>> try:
    ...     Flow().add(uses='Enc', py_modules=['broken.py'])
    ... except PyModuleImportError as exc:
    ...     print(exc.path, repr(exc.__cause__))  # doctest: +SKIP
    /work/broken.py RuntimeError('boom')
    """

    executor: str | None = None


def _import_failed(entry: str, exc: Exception, path: str | None = None) -> PyModuleImportError:
    where = f' ({path})' if path is not None and path != entry else ''
    kind = 'module ' if path is None else ''
    return PyModuleImportError(f'py_modules: importing {kind}{entry!r}{where} raised {type(exc).__name__}: {exc} '
                               f'(its traceback is above); fix the module, or remove it from py_modules',
                               name=entry if path is None else None, path=path)


def find_file(entry: str, base: str | None) -> tuple[str | None, list[str]]:
    """(the file ``entry`` names, or None; the paths looked at): an absolute path (``~``
    expanded) as it is; a relative one in ``base`` (the config's folder, if it has one),
    then in the current directory.

    Example
    -------
    >>> find_file('/etc/hostname', None)  # doctest: +SKIP
    ('/etc/hostname', ['/etc/hostname'])
    """
    expanded = os.path.expanduser(entry)
    if os.path.isabs(expanded):
        tried = [expanded]
    else:
        tried = [os.path.join(folder, expanded) for folder in (base, os.getcwd()) if folder]
        tried = list(dict.fromkeys(os.path.normpath(p) for p in tried))  # (base may be the cwd)
    for path in tried:
        if os.path.isfile(path):
            return path, tried
    return None, tried


def not_found(what: str, entry: str, tried: list[str], base: str | None) -> FileNotFoundError:
    """The error for a file ``find_file`` did not find, naming every place it looked.

    Example
    -------
    >>> print(not_found('py_modules:', 'x.py', ['/cfg/x.py', '/work/x.py'], '/cfg'))
    py_modules: 'x.py' not found: looked for /cfg/x.py (beside the config), /work/x.py (the current directory)
    """
    expanded = os.path.expanduser(entry)

    def labelled(path: str) -> str:
        if os.path.isabs(expanded):
            return path
        beside = base is not None and path == os.path.normpath(os.path.join(base, expanded))
        return f'{path} ({"beside the config" if beside else "the current directory"})'
    return FileNotFoundError(f'{what} {entry!r} not found: looked for {", ".join(map(labelled, tried))}')


def _is_module_path(entry: str) -> bool:
    """Whether a ``py_modules`` entry is a file (``.py``, or with a folder in it), not a
    module name to import (one rule for loading, and for reading and writing configs)."""
    return entry.endswith('.py') or os.sep in entry or '/' in entry


def _find_module_file(entry: str, base: str | None) -> str:
    path, tried = find_file(entry, base)
    if path is None:
        raise not_found('py_modules:', entry, tried, base)
    return os.path.realpath(path)


def import_py_modules(modules: str | Iterable[str], base_dir: str | None = None) -> list:
    """Import Jina 2's ``metas.py_modules``: ``.py`` files (a relative one looked up in
    ``base_dir``, then in the current directory) or dotted module names; returns the modules.

    A file is imported once per path under a private module name (two configs may each
    have an ``executor.py``) and its classes travel to executor processes by value; its
    directory is added to ``sys.path`` so that it can import its neighbours.

    Example
    -------
    >>> import_py_modules(['my_executor.py'], base_dir='/path/to/config/dir')  # doctest: +SKIP
    """
    if isinstance(modules, str):
        modules = [modules]
    if not isinstance(modules, Iterable) or not all(isinstance(m, str) for m in modules):
        raise TypeError(f'py_modules takes a list of .py files or module names, got {modules!r:.80}')
    out = []
    for entry in modules:
        if not _is_module_path(entry):
            try:
                out.append(importlib.import_module(entry))
            except Exception as exc:
                raise _import_failed(entry, exc) from exc
            continue
        path = _find_module_file(entry, base_dir)
        if path in _imported:
            out.append(_imported[path])
            continue
        folder = os.path.dirname(path)
        if folder not in sys.path:
            sys.path.append(folder)
        stem = re.sub(r'\W', '_', os.path.splitext(os.path.basename(path))[0])
        name = f'_runtime_py_modules.{stem}_{hashlib.sha1(path.encode()).hexdigest()[:8]}'
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            del sys.modules[name]
            if not isinstance(exc, Exception):  # (Ctrl-C, SystemExit: not the module's fault)
                raise
            raise _import_failed(entry, exc, path) from exc
        import cloudpickle
        cloudpickle.register_pickle_by_value(module)  # the processes cannot import it by this name
        _imported[path] = module
        out.append(module)
    return out


def py_modules_paths(modules: str | Iterable[str], base_dir: str | None = None) -> list[str]:
    """``py_modules`` as another process (with another current directory) imports them:
    files as absolute paths (looked up as ``import_py_modules`` does), module names as
    they are.

    Example
    -------
    >>> py_modules_paths(['enc.py', 'pkg.helpers'], base_dir='/cfg')  # doctest: +SKIP
    ['/cfg/enc.py', 'pkg.helpers']
    """
    modules = [modules] if isinstance(modules, str) else list(modules)
    return [_find_module_file(m, base_dir) if _is_module_path(m) else m for m in modules]


def absolute_py_modules(holder: Any, base: str | None) -> None:
    """The file entries of ``holder['py_modules']`` (a metas dict, or a Flow config's
    executor or ``with:``) made absolute, found beside the config (``base``) or in the
    current directory; FileNotFoundError naming both when neither has one."""
    if not (isinstance(holder, dict) and holder.get('py_modules')):
        return
    mods = holder['py_modules']
    mods = [mods] if isinstance(mods, str) else mods
    if isinstance(mods, (list, tuple)):
        holder['py_modules'] = [_absolute_module_file(m, base) if isinstance(m, str) and _is_module_path(m)
                                else m for m in mods]


def _absolute_module_file(entry: str, base: str | None) -> str:
    path, tried = find_file(entry, base)
    if path is None:
        raise not_found('py_modules:', entry, tried, base)
    return os.path.abspath(path)  # (not realpath: errors name the file as the config does)


def uses_path(value: Any, base: str | None) -> Any:
    """A ``uses`` (or ``uses_before`` / ``uses_after``) of a Flow config: the path of a
    YAML file made absolute (found beside the config, else in the current directory;
    FileNotFoundError naming both when neither has it), the ``py_modules`` of a dict
    likewise; anything else as it is."""
    if isinstance(value, str) and value.endswith(('.yml', '.yaml')) and '\n' not in value:
        path, tried = find_file(value, base)
        if path is None:
            raise not_found('YAML config', value, tried, base)
        return os.path.abspath(path)
    if isinstance(value, dict):
        absolute_py_modules(value.get('metas'), base)
    return value
