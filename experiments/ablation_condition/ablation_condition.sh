#!/usr/bin/env bash
# Issue 13's condition-fidelity ablation: each variant in experiments/ablation_condition/configs/<name>.yaml is
# trained with the demo profile's diffusion budget (10,000 steps of 64 crystals, lr 1e-3, seed 0,
# compact size) on the committed demo split, then regenerates the first 100 test structures with
# classifier-free guidance (omega = 1, the demo's 200 strided steps) from T = 200, 500 and 1000,
# and is scored with the demo run's surrogate. Every step is skipped when its output exists, so an
# interrupted run resumes. The table is rendered by experiments/ablation_condition/ablation_condition_table.py.
#
#   bash experiments/ablation_condition/ablation_condition.sh paper x0 ...   # names of configs/*.yaml here
#
# Outputs: work/ablation_condition/<name>/{model/,gen_T*.npz,metrics_T*.json,timing.json,*.log}
set -euo pipefail
cd "$(dirname "$0")/../.."   # the repository root
CONFIGS=experiments/ablation_condition/configs
DM=.venv/bin/dosmatgen
STORE=resources/builtin_dos.npz
DEMO=results/demo_run
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
[ $# -ge 1 ] || { echo "usage: bash experiments/ablation_condition/ablation_condition.sh NAME [NAME ...]" >&2; exit 2; }
for name in "$@"; do
  [ -f "$CONFIGS/$name.yaml" ] || { echo "no $CONFIGS/$name.yaml" >&2; exit 2; }
done
for name in "$@"; do
  out=work/ablation_condition/$name
  mkdir -p "$out"
  if [ ! -f "$out/model/best.pt" ] || [ -f "$out/model/.incomplete" ]; then
    touch "$out/model/.incomplete" 2>/dev/null || { mkdir -p "$out/model"; touch "$out/model/.incomplete"; }
    cmd="$DM train --kind diffusion --config $CONFIGS/$name.yaml --store $STORE --split $DEMO/split.json --standardiser $DEMO/standardiser.json --epochs 5000 --batch-size 64 --lr 0.001 --max-steps 10000 --device cpu --seed 0 --out $out/model --no-progress"
    echo "[ablation] $(date -u +%H:%M:%S) $name: train"
    t0=$(date +%s)
    commit=$(git rev-parse HEAD)
    $cmd > "$out/train.log" 2>&1
    printf '{"train_command": "%s", "train_wall_s": %d, "threads": %d, "commit": "%s"}\n' \
      "$cmd" $(( $(date +%s) - t0 )) "$THREADS" "$commit" > "$out/timing.json"
    rm -f "$out/model/.incomplete"
  fi
  for T in 200 500 1000; do
    gen=$out/gen_T$T.npz
    if [ ! -f "$gen" ]; then
      echo "[ablation] $(date -u +%H:%M:%S) $name: regenerate T=$T"
      $DM evaluate regenerate --checkpoint "$out/model/best.pt" --store $STORE --split $DEMO/split.json \
        --subset test --guidance cfg --omega 1.0 --t0 $T --steps 200 --limit 100 --batch-size 128 \
        --device cpu --seed 0 --out "$gen" --no-progress > "$out/regenerate_T$T.log" 2>&1
    fi
  done
done
for name in "$@"; do
  out=work/ablation_condition/$name
  for T in 200 500 1000; do
    met=$out/metrics_T$T.json
    if [ ! -f "$met" ]; then
      echo "[ablation] $(date -u +%H:%M:%S) $name: score T=$T"
      $DM evaluate score --generated "$out/gen_T$T.npz" --surrogate $DEMO/surrogate.pt --store $STORE \
        --split $DEMO/split.json --match-timeout 10 --workers 1 --device cpu --out "$met" --no-progress \
        > "$out/score_T$T.log" 2>&1
    fi
  done
done
echo "[ablation] $(date -u +%H:%M:%S) done: $*"
