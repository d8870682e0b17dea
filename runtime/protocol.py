"""Message kinds between the parent (ROUTER) and executor processes (DEALER).

A message is [pickled list of headers, one frame per header]: a batch, so that requests
headed for the same process at once cost one hop. The frame of a request is its payload's
pickle (see ``codec``), else empty. Headers stay small: ids, endpoint, parameters, where
the payload's buffers lie.

Parent -> worker:
    (CONFIG, cfg) + cloudpickled class   answer to HELLO
    (REQ, rid, endpoint, pickled parameters, earlier results, payload, frees) + meta
    (FREE, slots)                         slots of the worker's arena it may reuse
    (STOP, slots)
Worker -> parent:
    (HELLO, pid)
    (READY, info) | (INIT_ERROR, exc_type, message, traceback)
    (OK, rid, payload, allocs, results, times, pins, releases, t_send) + meta
    (ERR, rid, exc_type, message, traceback, times, pins, releases, t_send)
    (RELEASE, releases)                   kept buffers the executor let go of
    (FATAL, traceback)                    an error outside any handler, just before exiting
"""
HELLO, CONFIG, READY, INIT_ERROR = 'hello', 'config', 'ready', 'init_error'
REQ, OK, ERR, FREE, STOP, RELEASE, FATAL = 'req', 'ok', 'err', 'free', 'stop', 'release', 'fatal'
