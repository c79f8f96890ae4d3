#!/usr/bin/env bash
# The GPU figures, in one call on a lent GPU machine (each minute there is counted):
#
#   bash benchmarks/gpu.sh            # on the GPU machine, from the project root; results in $OUT
#   DEVICE=cpu EXTRA="--epochs 0.02" SEEDS=1 SPEED_SKIP=pipeline,augment,inference,predict BUDGET=300 \
#     bash benchmarks/gpu.sh                                       # a dry run here
#
# 1. a smoke run of `best` with the CUDA-graph step; if it fails, everything runs with --graph off;
# 2. benchmarks/speed.py --device cuda --seeds 10 (the race to 99% against the anchor, start-up;
#    SPEED=0 leaves it out), and the tests that need a GPU (PYTEST="-m cuda tests/test_training.py");
# 3. the runs in $ALONE, one at a time, timed: `best` and GPU recipe candidates (seed 0);
# 4. until the budget is spent, the runs in $QUEUE, JOBS at a time (their seconds are not
#    timings): more seeds of the candidates and of `best`, and ensemble members (elastic
#    distortion, wider, longer), all with the same validation split, so that every choice among
#    them can be made on validation.
# Every run's metrics.json and best.pt come back in $OUT (tars of at most 15 MB); choices are
# made afterwards, on validation, by whoever reads them.
set -u
OUT=${OUT:-/tmp/gpu-out}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-540}   # seconds this script may take in all
EXTRA=${EXTRA:-}        # appended to every training command (a dry run: --epochs 0.02)
SEEDS=${SEEDS:-10}
JOBS=${JOBS:-4}         # runs at once in part 4
PY=${PY:-python3}
mkdir -p "$OUT"
T0=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - T0))); }
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
RUNS=$(mktemp -d)
LOG="$OUT/log.txt"
say() { echo "[$(($(date +%s) - T0))s] $*" | tee -a "$LOG"; }

if [ -d .gpu/mnist ]; then  # the four MNIST files, gzipped, carried in an ignored folder
  mkdir -p /tmp/gpu-data/mnist
  for f in .gpu/mnist/*.gz; do gunzip -c "$f" >"/tmp/gpu-data/mnist/$(basename "$f" .gz)"; done
  export DIGITREC_DATA=/tmp/gpu-data
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
  $PY -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
} 2>&1 | tee -a "$LOG"

train() {  # NAME OPTIONS...: one run into $RUNS/NAME, its output in $RUNS/NAME.log
  local name=$1; shift
  timeout "$(( $(left) > 30 ? $(left) - 25 : 5 ))" $PY -m digitrec train "$@" --device "$DEVICE" $GRAPH_OPT $EXTRA \
    --out "$RUNS/$name" >"$RUNS/$name.log" 2>&1
}

# 1. the CUDA-graph step on a real GPU
GRAPH_OPT=""
say "smoke: best, 0.2 epochs"
if ! EXTRA="$EXTRA --epochs 0.2" train smoke --recipe best --quiet; then
  tail -20 "$RUNS/smoke.log" | tee -a "$LOG"
  GRAPH_OPT="--graph off"
  say "the CUDA-graph step failed: everything below runs with --graph off"
  EXTRA="$EXTRA --epochs 0.2" train smoke-nograph --recipe best --quiet || { tail -20 "$RUNS/smoke-nograph.log" | tee -a "$LOG"; exit 1; }
fi

# 2. the race and the start-up
if [ "${SPEED:-1}" = 1 ]; then
  say "speed.py --device $DEVICE --seeds $SEEDS"
  timeout "$(( $(left) / 2 ))" $PY benchmarks/speed.py --device "$DEVICE" --seeds "$SEEDS" --skip "${SPEED_SKIP:-}" \
    --graph "$([ -n "$GRAPH_OPT" ] && echo off || echo auto)" >"$OUT/speed.md" 2>"$OUT/speed.err" || say "speed.py ended with $?"
fi
if [ -n "${PYTEST:-}" ]; then  # tests that need the GPU, e.g. PYTEST="-m cuda tests/test_training.py"
  say "pytest $PYTEST"
  timeout 120 $PY -m pytest -q -p no:cacheprovider $PYTEST 2>&1 | tail -n 15 | tee -a "$LOG"
fi

# 3. runs timed alone, then 4. more runs, JOBS at a time, while the budget lasts (their seconds
# are not timings). NAME-sSEED: the options of NAME below, with --seed SEED.
declare -A OPTS=(
  [best]="--recipe best"
  [b256]="--recipe best --batch-size 256 --lr 4e-3 --epochs 12"
  [b512]="--recipe best --batch-size 512 --lr 6e-3 --epochs 15"
  [b512e8]="--recipe best --batch-size 512 --lr 6e-3 --epochs 8"
  [elastic]="--recipe best --aug-elastic 2"
  [wide]="--recipe best --model-arg width=96 --epochs 30"
  [long]="--recipe best --model-arg width=64 --epochs 30 --aug-elastic 2"
  [w96b512e30]="--recipe best --model-arg width=96 --batch-size 512 --lr 6e-3 --epochs 30"
  [w96b512e15]="--recipe best --model-arg width=96 --batch-size 512 --lr 6e-3 --epochs 15"
)
ALONE=${ALONE:-"best-s0 b256-s0 b512-s0 b512e8-s0"}
if [ -z "${QUEUE:-}" ]; then
  QUEUE=""
  for s in 1 2 3; do for m in best elastic wide long b256 b512 b512e8; do QUEUE+=" $m-s$s"; done; done
  QUEUE+=" best-s4 elastic-s4 best-s5 elastic-s5 wide-s4 long-s4"
fi
for job in $ALONE; do
  say "$job, alone"
  train "$job" ${OPTS[${job%-s*}]} --seed "${job##*-s}"
done
say "then $(echo $QUEUE | wc -w) runs, $JOBS at a time"
for job in $QUEUE; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done
  [ "$(left)" -gt 90 ] || { say "budget spent: $job and after not started"; break; }
  train "$job" ${OPTS[${job%-s*}]} --seed "${job##*-s}" --quiet &
done
wait

# 5. what comes back
say "collecting"
$PY - "$RUNS" "$OUT" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys, tarfile
from pathlib import Path

runs, out = Path(sys.argv[1]), Path(sys.argv[2])
table, done = {}, []
for d in sorted(p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()):
    m = d / "metrics.json"
    if not m.exists():
        table[d.name] = {"finished": False}
        continue
    j = json.loads(m.read_text())
    table[d.name] = {"finished": True, **{k: j.get(k) for k in ("val_accuracy", "test_accuracy", "train_seconds",
                     "warmup_seconds", "wall_seconds", "parameters", "phases")}}
    done.append(d)
(out / "results.json").write_text(json.dumps(table, indent=1))
for name, r in table.items():
    print(name, *(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items() if k != "phases"))
part, size, k = [], 0, 0
def flush():
    global part, size, k
    if part:
        with tarfile.open(out / f"runs{k}.tar", "w") as t:
            for d in part:
                for f in ("best.pt", "metrics.json", "config.json", "history.csv"):
                    if (d / f).exists():
                        t.add(d / f, arcname=f"{d.name}/{f}")
        k, part, size = k + 1, [], 0
for d in done:
    if k == 3:  # at most 8 files come back: the logs, speed's two, results.json and three tars
        print("not brought back (no room):", d.name)
        continue
    s = (d / "best.pt").stat().st_size
    if size + s > 15_000_000:
        flush()
    part.append(d)
    size += s
flush()
EOF
tar -cf "$OUT/logs.tar" -C "$RUNS" $(cd "$RUNS" && ls *.log) 2>/dev/null
say "done"
