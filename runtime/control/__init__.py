"""The control layer: one post's window and callbacks (``post``), the request table and
its stepping through the Flow's graph (``router``), the graph itself (``topology``),
joins (``merge``), and what the user sees of a run (``progress``, ``profiling``, ``plot``).

Nothing here touches a socket, a process or shared memory: the router talks to a
``runtime.transport`` implementation.
"""
