#!/usr/bin/env bash
# The GPU figures the README still owes, in calls that each fit a 10-minute slot on a lent GPU machine.
# That machine has torch (CUDA), sentencepiece, sacrebleu, click, PyYAML, tqdm and tensorboard, but no
# network and no `datasets`: the package runs from the checkout (PYTHONPATH) and the corpus comes from a
# mirror folder copied next to it (the text recipes read local files without `datasets`).
#
#   bash benchmarks/gpu_session.sh tests OUT
#       first, before any figure: the suite's GPU cases (`pytest -m gpu tests/model/test_devices.py`: model,
#       search, compiled decoding with real CUDA graphs, training steps under bf16 autocast, resume
#       placement, RNG, TF32), the claims the CPU suite checks by emulation; OUT gets pytest.log and
#       gpu-tests.xml. Needs pytest for PYTHON (a copy of the venv's pytest, pluggy, iniconfig and
#       packaging on PYTHONPATH will do)
#   bash benchmarks/gpu_session.sh recipe multi30k-de-en MIRROR OUT [key=value ...]
#       data -> spm -> train -> evaluate of recipes/<name>.yaml; OUT gets <name>.results.json,
#       <name>.train.log and a line in recipes.jsonl with the wall time of the whole recipe
#   bash benchmarks/gpu_session.sh bench RUN_DIR MIRROR OUT
#       train_throughput.py (fp32, bf16; eager, stepped, compiled with CUDA graphs) and decode_speed.py
#       (greedy and beam 5, eager and compiled) on the trained RUN_DIR; JSON lines in OUT;
#       TRAIN_BENCH_ARGS / DECODE_BENCH_ARGS add options to either script
#
# DEVICE (default cuda) and PYTHON (default python3) change where and with what it runs; on a CPU with
# DEVICE=cpu and tiny overrides (max_steps=10) it is a dry run of the same commands.
#   bash benchmarks/gpu_session.sh --dry-run
#       one JSON line per figure the session owes: its name and the command that measures it (each
#       file named must exist: tests/test_package.py runs this, so it cannot rot)
set -euo pipefail
what=${1:?--dry-run | tests OUT | recipe NAME MIRROR OUT | bench RUN_DIR MIRROR OUT}
if [ "$what" = --dry-run ]; then
    g='bash benchmarks/gpu_session.sh'
    cat <<PLAN
{"figure": "gpu_tests", "command": "$g tests OUT", "files": ["tests/model/test_devices.py"]}
{"figure": "multi30k_de_en_dev_bleu", "command": "$g recipe multi30k-de-en MIRROR OUT", "files": ["recipes/multi30k-de-en.yaml"]}
{"figure": "train_tokens_per_s", "command": "$g bench RUN_DIR MIRROR OUT", "files": ["benchmarks/train_throughput.py"]}
{"figure": "decode_sentences_per_s", "command": "$g bench RUN_DIR MIRROR OUT", "files": ["benchmarks/decode_speed.py"]}
{"figure": "dispatched_ops_per_step", "command": "python3 benchmarks/dispatch_count.py --rows 8,64 --amp", "files": ["benchmarks/dispatch_count.py"]}
{"figure": "stop_save_s", "command": "python3 benchmarks/stop_time.py --out OUT/stop", "files": ["benchmarks/stop_time.py", "recipes/wmt14-en-de.yaml"]}
PLAN
    exit 0
fi
py=${PYTHON:-python3}
if [ "$what" = tests ]; then
    out=${2:?output folder}
    mkdir -p "$out"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv >"$out/gpu.csv" || true
    $py -c 'import pytest' 2>/dev/null || { echo "error: pytest is not importable by $py" >&2; exit 2; }
    marker=(-m gpu)  # the CUDA cases only: the CPU ones ran in CI
    if [ "${DEVICE:-cuda}" = cpu ]; then
        marker=()  # dry run: the CPU cases, the CUDA ones skipped
    else
        $py -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "error: torch sees no CUDA device")'
    fi
    # -p no:cacheprovider: nothing written into the checkout
    $py -m pytest -p no:cacheprovider -q -rs "${marker[@]}" tests/model/test_devices.py --junitxml "$out/gpu-tests.xml" 2>&1 | tee "$out/pytest.log"
    exit "${PIPESTATUS[0]}"
fi
arg=${2:?}
mirror=${3:?mirror folder}
out=${4:?output folder}
shift 4
device=${DEVICE:-cuda}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$out"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv >"$out/gpu.csv" || true

case $what in
recipe)
    recipe=recipes/$arg.yaml
    start=$(date +%s.%N)
    $py -m seq2seq download "$recipe" --mirror "$mirror" "$@"
    $py -m seq2seq spm "$recipe" "$@"
    $py -m seq2seq train "$recipe" "train.device=$device" "$@"
    $py -m seq2seq evaluate "$recipe" "train.device=$device" "$@" >/dev/null
    end=$(date +%s.%N)
    run=$($py -m seq2seq config "$recipe" "$@" | $py -c 'import sys, yaml; c = yaml.safe_load(sys.stdin); print(c["run_dir"] or "data/%s/run" % c["name"])')
    cp "$run/results.json" "$out/$arg.results.json"
    cat "$run/results.txt"
    cp "$run/train.log" "$out/$arg.train.log"
    $py - "$arg" "$start" "$end" "$*" >>"$out/recipes.jsonl" <<'EOF'
import json, sys, torch
name, start, end, overrides = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
print(json.dumps({"recipe": name, "overrides": overrides, "wall_s": round(end - start, 1), "device": dev,
                  "torch": torch.__version__}))
EOF
    ;;
bench)
    $py benchmarks/train_throughput.py --device "$device" --mirror "$mirror" --precision fp32,bf16 --baseline \
        --compile reduce-overhead --steps 50 --warmup 5 ${TRAIN_BENCH_ARGS:-} | tee "$out/train_throughput.jsonl"
    $py benchmarks/decode_speed.py --device "$device" --mirror "$mirror" --run-dir "$arg" --beams 1,5 \
        --compile off,reduce-overhead --repeats 3 ${DECODE_BENCH_ARGS:-} | tee "$out/decode_speed.jsonl"
    ;;
*)
    echo "error: first argument: tests, recipe or bench, not '$what'" >&2
    exit 2
    ;;
esac
