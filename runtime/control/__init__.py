"""The control layer: one post's checked arguments (``post_args``), window and callbacks
(``post``), the request table and its stepping through the Flow's graph (``router``), the
executors' instances as the router sees them (``instances``), the graph itself
(``topology``), joins (``merge``), hung instances (``hung``), Ctrl-C and SIGTERM during a
post (``stop_signals``), and what the user sees of a run (``progress``, ``profiling``,
``plot``).

Nothing here touches a socket or shared memory, and no process but through a
``runtime.transport`` implementation (``stop_signals`` only installs this process's own
signal handlers).
"""
