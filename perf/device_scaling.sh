#!/usr/bin/env bash
# The scaling benchmark of issue 4 on a many-core machine (16 cores), run once:
# Flow replicas vs multiprocessing.Pool at 1, 2, 4, 8 and 14 processes, then search over
# a 100,000 x 768 index in 1 and 2 shards. Takes about 2-4 minutes on 16 cores.
#
# That machine has no network: carry a directory of wheels (default .whl/, ignored by git)
# holding numpy, pyzmq, cloudpickle, psutil and tqdm for its Python (cp311 and cp312 both
# may be there: pip picks the ones matching the interpreter). Results go to $OUT
# (scaling.json, scaling.txt); the project itself runs from this checkout via PYTHONPATH.
#
#   bash perf/device_scaling.sh   # env: WHEELS=.whl COUNTS=1,2,4,8,14 REPS=5 OUT=/tmp/out VENV=/tmp/venv ARGS=
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}
WHEELS=${WHEELS:-.whl}
COUNTS=${COUNTS:-1,2,4,8,14}
REPS=${REPS:-5}  # rounds: 5 here (the default 3 elsewhere), for steadier medians of a one-off run
VENV=${VENV:-/tmp/venv}
ARGS=${ARGS:-}  # e.g. --quick for a trial run
mkdir -p "$OUT"

python3 --version
python3 -c 'import sys; print("python tag: cp%d%d" % sys.version_info[:2])'
echo "cpus: $(nproc) usable, $(getconf _NPROCESSORS_ONLN) online; load: $(cat /proc/loadavg)"
ls "$WHEELS" 2>/dev/null | sed 's/^/wheel: /'
# Every Flow process maps a 32 MiB arena in /dev/shm (touched as the ring turns; ~40 such
# processes run at once here); a container's default 64 MiB /dev/shm would SIGBUS them.
df -h /dev/shm
shm_kb=$(df -k --output=avail /dev/shm | tail -1)
if [ "${shm_kb:-0}" -lt $((4 * 1024 * 1024)) ]; then
    echo "/dev/shm has under 4 GiB free: remounting it with size=16G"
    mount -o remount,size=16G /dev/shm && df -h /dev/shm
fi

PKGS="numpy pyzmq cloudpickle psutil tqdm"
PY="$VENV/bin/python"
PYPATH=$PWD
if [ -x "$PY" ] || python3 -m venv "$VENV"; then
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" $PKGS \
        || { echo "pip install from $WHEELS failed: no wheel for $(python3 --version)?"; exit 3; }
else  # no ensurepip (Debian without python3-venv): install into a folder with the system pip
    echo "python3 -m venv failed; installing into /tmp/pylibs with python3 -m pip --target"
    PY=python3
    PYPATH=/tmp/pylibs:$PWD
    python3 -m pip install -q --no-index --find-links "$WHEELS" --target /tmp/pylibs $PKGS \
        || { echo "no venv and no usable pip for $(python3 --version)"; exit 2; }
fi
PYTHONPATH=$PYPATH "$PY" -c 'import numpy, zmq, cloudpickle, psutil, tqdm; print("numpy", numpy.__version__, "pyzmq", zmq.__version__)' \
    || exit 3

# Leftovers of this run are checked after it: none may remain (DESIGN.md, invariant 3).
before=$(ls /dev/shm | grep -c '^shmflow-' || true)
PYTHONPATH=$PYPATH timeout -k 10 420 "$PY" -m perf.bench_scaling --counts "$COUNTS" --reps "$REPS" $ARGS \
    --json "$OUT/scaling.json" 2>&1 | tee "$OUT/scaling.txt"
rc=${PIPESTATUS[0]}
sleep 1
after=$(ls /dev/shm | grep -c '^shmflow-' || true)
left=$(pgrep -f 'runtime.transport.local' | wc -l)
echo "exit $rc; /dev/shm shmflow files before $before, after $after; runtime.transport.local processes left: $left" \
    | tee -a "$OUT/scaling.txt"
exit "$rc"
