"""Message kinds between the parent (ROUTER) and executor processes (DEALER).

Each message is a pickled header tuple, optionally followed by the payload's pickle
frame (see ``codec``). Headers stay small: ids, endpoint, parameters, buffer references.

Parent -> worker:
    (CONFIG, cfg) + cloudpickled class   answer to HELLO
    (REQ, rid, endpoint, parameters, refs, frees) + meta
    (FREE, slots)                         slots of the worker's arena it may reuse
    (STOP, slots)
Worker -> parent:
    (HELLO, pid)
    (READY, info) | (INIT_ERROR, exc_type, message, traceback)
    (OK, rid, refs, allocs, results, times, pins, releases, t_send) + meta
    (ERR, rid, exc_type, message, traceback, times, pins, releases, t_send)
    (RELEASE, releases)                   kept buffers the executor let go of
"""
HELLO, CONFIG, READY, INIT_ERROR = 'hello', 'config', 'ready', 'init_error'
REQ, OK, ERR, FREE, STOP, RELEASE = 'req', 'ok', 'err', 'free', 'stop', 'release'
