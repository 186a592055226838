#!/usr/bin/env bash
# Sampling-side recipes for real crystals (issue 35) on the committed demo models: the 100 real MP-20
# test crystals of results/demo_run/split.json, CFG omega = 1, T = 1000, 200 steps, seed 0, the same
# models, split and seed for every variant. Writes results/real_crystal_recipe/<variant>.json (the
# metrics of `evaluate score`) and summary.md (scripts/... not needed: summary.py beside this file).
#
#   bash experiments/real_crystal_recipe/run.sh            # all variants (VARIANTS="a b" for some)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RUN=results/demo_run
OUT=${OUT:-results/real_crystal_recipe}
WORK=${WORK:-work/real_crystal_recipe}
STORE=resources/builtin_dos.npz
mkdir -p "$OUT" "$WORK"
"$PY" - "$RUN/split.json" "$WORK/split_real_test.json" <<'PYEOF'
import json, sys
from dosmatgen.data.split import record_source
split = json.load(open(sys.argv[1]))
real = [i for i in split["test"] if record_source(i) == "mp20"]
json.dump({"train": split["train"], "val": split["val"], "test": real}, open(sys.argv[2], "w"))
print(f"{len(real)} real test crystals")
PYEOF
declare -A FLAGS=(
  [demo]=""
  [tie]="--tie-equal-sites 0.05"
  [options_repel]="--step-lr 0 --omega-geometry 0 --repel-distance 1.0"
  [options_repel_tie]="--step-lr 0 --omega-geometry 0 --repel-distance 1.0 --tie-equal-sites 0.05"
)
for v in ${VARIANTS:-demo tie options_repel options_repel_tie}; do
  gen="$WORK/$v.npz"
  [ -f "$gen" ] || OMP_NUM_THREADS=1 "$PY" -m dosmatgen.cli evaluate regenerate --checkpoint "$RUN/diffusion.pt" \
    --store "$STORE" --split "$WORK/split_real_test.json" --subset test --guidance cfg --t0 1000 --steps 200 \
    --batch-size 128 --seed 0 --device cpu --no-progress ${FLAGS[$v]} --out "$gen"
  [ -f "$OUT/$v.json" ] || OMP_NUM_THREADS=1 "$PY" -m dosmatgen.cli evaluate score --generated "$gen" \
    --surrogate "$RUN/surrogate.pt" --store "$STORE" --split "$WORK/split_real_test.json" --no-novelty \
    --device cpu --no-progress --out "$OUT/$v.json"
done
"$PY" experiments/real_crystal_recipe/summary.py "$OUT" > "$OUT/summary.md"
cat "$OUT/summary.md"
