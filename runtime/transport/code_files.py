"""Source file names for executor code that travels by value.

cloudpickle ships a class defined in a script (``__main__``) or a notebook by value, and
names the file of every code object it ships ``<dynamic-code>``. A traceback from the
executor's process would then show neither the file nor the failing line. The parent
records where each function of the class came from (``code_files``); the process that
builds the executor gives the names back (``restore_code_files``), and ``traceback`` finds
the source lines through ``linecache`` as it would in the script itself.

Example
-------
>>> files = code_files(MyExecutor)                 # in the parent, before pickling
>>> restore_code_files(pickle.loads(blob), files)  # in the executor's process
"""
from __future__ import annotations

import types
from typing import Any, Iterator

__all__ = ['code_files', 'restore_code_files']

#: The file name cloudpickle gives every code object it ships by value.
DYNAMIC = '<dynamic-code>'


def _key(code: types.CodeType) -> str:
    # (co_qualname is Python 3.11's; on 3.10 a name and first line tell them apart as well)
    return f'{getattr(code, "co_qualname", code.co_name)}:{code.co_firstlineno}'


def _functions(cls: type, modules: set[str] | None) -> Iterator[types.FunctionType]:
    """The functions of ``cls`` (methods, static and class methods, properties, its own
    bases), and those they reach through their globals, closures and ``__wrapped__``,
    limited to ``modules`` (None: any function whose code is ``DYNAMIC``)."""
    seen: set[int] = set()
    stack: list[Any] = [cls]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, type):
            if modules is None or obj.__module__ in modules:
                stack.extend(vars(obj).values())
                stack.extend(obj.__bases__)
        elif isinstance(obj, (staticmethod, classmethod)):
            stack.append(obj.__func__)
        elif isinstance(obj, property):
            stack.extend(f for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
        elif isinstance(obj, types.FunctionType):
            ours = obj.__code__.co_filename == DYNAMIC if modules is None else obj.__module__ in modules
            if not ours:
                continue
            yield obj
            stack.extend(v for v in (obj.__globals__.get(n) for n in obj.__code__.co_names)
                         if isinstance(v, (type, types.FunctionType)))
            for cell in obj.__closure__ or ():
                try:
                    stack.append(cell.cell_contents)
                except ValueError:  # an empty cell
                    pass
            if hasattr(obj, '__wrapped__'):
                stack.append(obj.__wrapped__)


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _codes(c)


def code_files(cls: type) -> dict[str, str]:
    """{'qualname:first line': file} of the code of ``cls``'s module that may travel by
    value (only classes defined in ``__main__`` or a module cloudpickle ships by value do:
    the map is small and plain data)."""
    modules = {cls.__module__, '__main__'}
    return {_key(c): c.co_filename for f in _functions(cls, modules) for c in _codes(f.__code__)}


def _with_files(code: types.CodeType, files: dict[str, str]) -> types.CodeType:
    consts = tuple(_with_files(c, files) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    name = files.get(_key(code), code.co_filename) if code.co_filename == DYNAMIC else code.co_filename
    return code.replace(co_filename=name, co_consts=consts)


def restore_code_files(cls: type, files: dict[str, str] | None) -> None:
    """Give the functions of ``cls`` that arrived by value their files back (see
    ``code_files``); functions that did not arrive by value are left as they are."""
    if not files:
        return
    for f in list(_functions(cls, None)):
        f.__code__ = _with_files(f.__code__, files)
