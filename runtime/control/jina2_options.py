"""Jina 2.0's pod, Flow and client options: each is honoured (where what it asked for is
what happens here anyway) or refused, naming what it meant in Jina 2 and what to do here
instead. Checked by ``Flow(...)`` and ``add()`` (``specs.reject_jina_only``) before any
other refusal, so that a Jina 2 option is never answered with a generic "unexpected
argument" or a "did you mean" that points at something else (``timeout_ctrl`` is not
``timeout_ready``, ``native`` is not ``name``).

The names come from Jina 2.0.24's parsers (``jina/parsers/peapods``, ``flow.py``,
``client.py``): what its ``Flow(...)`` and ``Flow.add(...)`` took.

Example
-------
>>> kwargs = {'native': True}
>>> check_jina2_options('add', kwargs); kwargs
{}
>>> check_jina2_options('add', {'memory_hwm': 4})  # doctest: +ELLIPSIS
Traceback (most recent call last):
TypeError: add(memory_hwm=...) restarted a Jina 2 pod once it used that many GB of memory; ...
"""
from __future__ import annotations

from typing import Any

from .inputs import describe

__all__ = ['JINA2_OPTIONS', 'SAME_HERE', 'NOT_FOR_ONE_EXECUTOR', 'CLIENT_ONLY', 'DATA_TYPE', 'check_jina2_options',
           'take_parallel']

_NETWORK = ('is Jina 2 wiring between its pods; shmflow connects its own processes over private sockets, '
            'so remove it')
_GATEWAY = "configures Jina 2's HTTP gateway; give the gateway's options to Flow(protocol='http', port_expose=...)"
_LOGS = "configures Jina 2's logs; configure Python logging instead (the logger is named 'runtime')"
_CONTAINERS = ('runs Jina 2 executors in containers or remote pods; here executors are local processes, or Ray '
               "actors with Flow(backend='ray')")

_WIRING = ("was Jina 2's wiring between its pods; the Flow here connects its own processes over private "
           "sockets, so remove it")
_INTERNAL = ('was set by Jina 2 itself for each of its pods and peas, not by a script; the Flow here sets what '
             'its processes need, so remove it')
_REMOTE = ("reached Jina 2 executors on remote machines (JinaD, SSH tunnels, pods started outside the Flow); "
           "here executors are processes the Flow starts on this machine, or Ray actors on a cluster with "
           "Flow(backend='ray', ray_address=...)")
_CONTAINER = ('ran a Jina 2 executor from a Docker image or Jina Hub; here an executor is a Python class run in a '
              'process of its own: pass uses=MyExecutor (or uses=\'MyExecutor\' with py_modules=[...])')
_K8S = ("deployed a Jina 2 Flow on Kubernetes; not supported: executors here are local processes, or Ray actors "
        "with Flow(backend='ray')")
_COMPRESS = ("compressed the messages between Jina 2's pods; executors here hand documents over in shared memory, "
             "where compressing would only cost time, so remove it")
_API_DOCS = ("described Jina 2's HTTP API in its Swagger / OpenAPI docs (/docs); this gateway serves no API docs "
             "(its routes: POST /post, /index, /search, ..., GET /status), so remove it")

#: Jina 2 options with no counterpart here -> what they meant and what to do instead.
JINA2_OPTIONS = {
    **{k: _NETWORK for k in ('port_in', 'port_out', 'port_ctrl', 'zmq_identity', 'static_routing_table',
                             'hosts_in_connect', 'peas_hosts', 'expose_public', 'runtime_cls', 'pea_role',
                             'identity', 'socket_in', 'socket_out', 'host_in', 'host_out')},
    'restful': _GATEWAY,
    **{k: _LOGS for k in ('log_config', 'quiet', 'quiet_error', 'show_exc_info', 'quiet_remote_logs')},
    **{k: _CONTAINERS for k in ('upload_files', 'docker_kwargs', 'pull_latest', 'entrypoint', 'daemon')},
    'runtime_backend': 'chose threads or processes in Jina 2; every executor here runs in a process of its own',
    'gpus': "is not managed here: pass env={'CUDA_VISIBLE_DEVICES': '0'}, or ray_options={'num_gpus': 1} with "
            "Flow(backend='ray')",
    'read_only': 'is not supported: remove it (here what an executor changes always travels on, and one that '
                 'changes nothing costs nothing for it)',
    'dump_path': "is not supported: pass the path to your executor with uses_with={...}",
    'inspect': 'is not supported (Jina 2 inspect pods): add an executor that checks what it needs',
    **{k: _WIRING for k in ('connect_to_predecessor', 'ctrl_with_ipc', 'dynamic_routing', 'no_dynamic_routing',
                            'grpc_data_requests')},
    **{k: _INTERNAL for k in ('dynamic_routing_in', 'dynamic_routing_out', 'num_part', 'pod_role',
                              'noblock_on_start', 'routing_table', 'pea_id')},
    **{k: _REMOTE for k in ('ssh_server', 'ssh_keyfile', 'ssh_password', 'port_jinad', 'disable_remote',
                            'external', 'workspace_id')},
    **{k: _CONTAINER for k in ('runs_in_docker', 'volumes', 'install_requirements')},
    **{k: _K8S for k in ('infrastructure', 'k8s_namespace', 'k8s_uses_init', 'k8s_mount_path',
                         'k8s_init_container_command', 'k8s_custom_resource_dir')},
    **{k: _COMPRESS for k in ('compress', 'compress_min_bytes', 'compress_min_ratio')},
    **{k: _API_DOCS for k in ('title', 'description', 'default_swagger_ui')},
    'no_debug_endpoints': "removed /status and /post from Jina 2's HTTP gateway; this gateway always serves them "
                          "(Client.post uses /post): remove it, and keep the gateway on host='127.0.0.1' (the "
                          "default) to keep it private",
    'no_crud_endpoints': "removed /index, /search, /update and /delete from Jina 2's HTTP gateway; this gateway "
                         "always serves them, so remove it",
    'expose_endpoints': "mapped executor endpoints to extra HTTP paths of Jina 2's gateway; call "
                        "f.expose_endpoint('/endpoint', path='/http/path', methods=['GET']) for each instead",
    'memory_hwm': "restarted a Jina 2 pod once it used that many GB of memory; not supported: a process the OS "
                  "kills for memory is started again with add(max_restarts=N), and with Flow(backend='ray') "
                  "ray_options={'memory': bytes} bounds an actor's memory",
    'on_error_strategy': "chose what Jina 2's later executors did after one raised (IGNORE, SKIP_HANDLE, "
                         "THROW_EARLY); here a request whose handler raised goes to no later executor and fails: "
                         "on_error gets it, else post raises ExecutorError (post(continue_on_error=True) logs it "
                         "and goes on); to let a request go on, catch the exception in the handler",
    'timeout_ctrl': "was the timeout (ms) of Jina 2's control requests to its pods; here add(timeout_ready=...) "
                    "bounds an executor's start, Flow(timeout_close=...) its stop and post(timeout=...) a request",
    'name': "named a Jina 2 Flow in its log lines (and its Kubernetes namespace); a Flow here has no name: remove "
            "it (name each executor with add(name=...))",
    'runtime': 'chose threads or processes in Jina 2 (runtime is the short name of runtime_backend); every '
               'executor here runs in a process of its own, so remove it',
    'version': "printed Jina 2's version on its command line; runtime.__version__ is this runtime's",
    'version_full': "printed Jina 2's version on its command line; runtime.__version__ is this runtime's",
}
#: Options whose Jina 2 meaning, for the values listed, is what happens here anyway: taken
#: (and honoured by what the Flow does) with those values, refused with any other.
SAME_HERE = {
    'native': ((True, False), "chose whether a Jina 2 executor had to be a Python class run in its own runtime "
                              "(True) rather than a container; every executor here is (True or False then "
                              "change nothing)"),
    'scheduling': (('load_balance',), "chose how a Jina 2 pod spread requests over its replicas; here each goes to "
                                      "the replica with the fewest requests outstanding, which is "
                                      "scheduling='LOAD_BALANCE', the only one (ROUND_ROBIN is not kept)"),
    'prefetch_on_recv': ((1,), "was how many more requests Jina 2's gateway read from the input on each answer; "
                               "here a post sends one more as each answer comes back (prefetch_on_recv=1), and "
                               "Flow(prefetch=N) or post(prefetch=N) bounds the requests in flight"),
}
#: Options of the Flow, its gateway or its posts, which ``add()`` (one executor) refuses.
_POST_DEFAULT = ("is a default of the Flow's posts, not an option of one executor: give it to Flow({k}=...) or to "
                 "each post(..., {k}=...)")
NOT_FOR_ONE_EXECUTOR = {
    **{k: _POST_DEFAULT for k in ('request_size', 'show_progress', 'return_results', 'continue_on_error')},
    'prefetch': 'bounds the requests in flight of the whole Flow, not of one executor: give it to Flow(prefetch=N) '
                'or post(prefetch=N)',
    'asyncio': 'makes the whole Flow asynchronous: Flow(asyncio=True) (or AsyncFlow(...))',
    'target_peapod': 'chooses the executors of one request: give it to post(target_executor=...) (target_peapod '
                     'is its Jina 2.0 name)',
    'cors': "is an option of the Flow's HTTP gateway: Flow(cors=True, port_expose=..., protocol='http')",
    **{k: "is an option of Jina 2's client, not of one executor: a Flow here reaches its executors without a "
          "network client, so remove it" for k in ('proxy', 'https')},
    'results_as_docarray': "made Jina 2's posts return one DocumentArray, not an option of one executor: here "
                           "post(return_results=True) returns the Responses: take "
                           "DocumentArray([d for r in responses for d in r.docs])",
}
#: Options of Jina 2's client, which ``Flow(...)`` refuses (``add()``: ``NOT_FOR_ONE_EXECUTOR``).
CLIENT_ONLY = {
    'proxy': "chose whether Jina 2's client used the http_proxy / https_proxy variables to reach its gateway; a "
             "Flow here reaches its executors without a network client, so remove it",
    'https': "connected Jina 2's client to its gateway over TLS; a Flow here reaches its executors without a "
             "network client, and its gateway serves plain HTTP (put a TLS proxy in front of it), so remove it",
    'results_as_docarray': "made Jina 2's posts return one DocumentArray; here post(return_results=True) returns "
                           "the Responses: take DocumentArray([d for r in responses for d in r.docs])",
}
#: Jina 2 post's ``data_type`` (DataInputType): whether inputs were Documents or raw content to wrap.
DATA_TYPE = ("told Jina 2's client whether the inputs were Documents (DOCUMENT), raw content to wrap in Documents "
             "(CONTENT) or either (AUTO, its default); here inputs are always read as AUTO read them (a dict as a "
             "Document's fields, text, bytes and arrays as its content), so remove it; for CONTENT, wrap them "
             "yourself: post(on, [Document(content=x) for x in data])")


def _plain(value: Any) -> Any:
    """A value as ``SAME_HERE`` lists it: Jina 2's enums (``SchedulerType.LOAD_BALANCE``) by
    their name, strings in lower case."""
    name = getattr(value, 'name', None)
    if isinstance(name, str) and not isinstance(value, str):
        value = name
    return value.lower() if isinstance(value, str) else value


def check_jina2_options(where: str, kwargs: dict) -> None:
    """Take out of ``kwargs`` the Jina 2 options that are honoured as they are (``SAME_HERE``
    with a value listed there), and raise TypeError for the first one that is not: what it
    meant in Jina 2 and what to do instead. Other arguments are left for the caller's own
    refusal. ``where`` is ``'Flow'`` or ``'add'``.

    Example
    -------
    >>> check_jina2_options('Flow', {'timeout_ctrl': 5000})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: Flow(timeout_ctrl=...) was the timeout (ms) of Jina 2's control requests to its pods; ...
    """
    for k in list(kwargs):
        if k in SAME_HERE:
            allowed, meant = SAME_HERE[k]
            value = _plain(kwargs[k])
            # (True == 1: a bool is no count, a count no bool)
            if any(value == a and type(value) is type(a) for a in allowed):
                del kwargs[k]
                continue
            raise TypeError(f'{where}({k}={kwargs[k]!r}) {meant}; got {describe(kwargs[k])}: remove it')
        if k in JINA2_OPTIONS:  # (add()'s own name is an argument of its own: never in kwargs)
            raise TypeError(f'{where}({k}=...) {JINA2_OPTIONS[k]}')
        if k == 'data_type':
            raise TypeError(f'{where}(data_type=...) is an argument of post(...), where it {DATA_TYPE}')
        if where == 'Flow' and k in CLIENT_ONLY:
            raise TypeError(f'Flow({k}=...) {CLIENT_ONLY[k]}')
        if where == 'add' and k in NOT_FOR_ONE_EXECUTOR:
            raise TypeError(f'add({k}=...) {NOT_FOR_ONE_EXECUTOR[k].format(k=k)}')
        if where == 'Flow' and k == 'target_peapod':
            raise TypeError('Flow(target_peapod=...) chooses the executors of one request: give it to '
                            'post(target_executor=...) (target_peapod is its Jina 2.0 name)')


def take_parallel(where: str, kwargs: dict) -> None:
    """Jina 2's ``parallel`` (its name of ``shards``) in ``kwargs`` renamed ``shards``, as
    ``add()`` takes it; TypeError if both are given.

    Example
    -------
    >>> kwargs = {'parallel': 2}
    >>> take_parallel('Flow', kwargs); kwargs
    {'shards': 2}
    """
    if 'parallel' in kwargs:
        if 'shards' in kwargs:
            raise TypeError(f'{where}(): give shards or parallel (its Jina 2 name), not both')
        kwargs['shards'] = kwargs.pop('parallel')
