#!/usr/bin/env bash
# Can the demo's compact model hold real geometry at all? The demo's diffusion training (shift10.yaml)
# on 64 of its own real training crystals alone, each drawn 16 times per epoch (--repeat-source), for
# STEPS steps (default 5,000: each crystal seen ~5,000 times, 10x the demo training's visits; the
# validation part, which must differ, is the demo split's 25 real validation crystals); then the
# end-of-training weights (final.pt: what the 64 taught, not what generalises) regenerate those 64
# from pure noise with their elements clamped (csp_probe.py) and from t0 = 200-800 (channel_probe.py).
# The learning rate stays 1e-3 (no plateau schedule: the validation loss of unseen crystals rises).
# A model that places most of them can represent real crystals and the demo's placement (2-9 of 100
# seen) is a matter of visits per crystal; one that places few cannot, at this size.
#
#   W=work/real_crystal_training/demo375 OUT=results/real_crystal_training/demo375/overfit \
#     [STEPS=5000] [SEED=0] bash experiments/real_crystal_training/overfit_probe.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${W:?set W to the experiment work folder (holding run/ and split_test_seen.json)} OUT=${OUT:?set OUT}
STEPS=${STEPS:-5000} SEED=${SEED:-0}
PY=.venv/bin/python HERE=experiments/real_crystal_training
M="$W/models/overfit64_${STEPS}_s$SEED" SPLIT="$W/split_overfit64.json" TRAIN_SPLIT="$W/split_overfit64_train.json"
mkdir -p "$M" "$OUT"
# TRAIN_SPLIT: the 64 train, the demo's real validation and test crystals as the other parts (the
# parts must not overlap); SPLIT: the 64 as the test part, what the probes regenerate
"$PY" - "$W/split_test_seen.json" "$W/run/split.json" "$TRAIN_SPLIT" "$SPLIT" <<'PYEOF'
import json, sys
from dosmatgen.data.split import record_source
ids = json.load(open(sys.argv[1]))["test"][:64]
run = json.load(open(sys.argv[2]))
real = {part: [i for i in run[part] if record_source(i) == "mp20"] for part in ("val", "test")}
json.dump({"train": ids, **real}, open(sys.argv[3], "w"))
json.dump({"train": ids, "val": real["val"], "test": ids}, open(sys.argv[4], "w"))
PYEOF
[ -f "$M/final.pt" ] || OMP_NUM_THREADS=1 "$PY" -m dosmatgen.cli train --kind diffusion --store resources/builtin_dos.npz \
  --split "$TRAIN_SPLIT" --standardiser "$W/run/standardiser.json" --config "$HERE/shift10.yaml" --type-target posterior \
  --repeat-source mp20=16 --epochs 100000 --batch-size 64 --lr 1e-3 --patience 1000000 --max-steps "$STEPS" --device cpu --seed "$SEED" \
  --out "$M" --no-progress > "$M/train.log" 2>&1
OMP_NUM_THREADS=1 "$PY" "$HERE/csp_probe.py" "$M/final.pt" "$SPLIT" "$OUT/csp_overfit64_${STEPS}_s$SEED.json"
OMP_NUM_THREADS=1 "$PY" "$HERE/channel_probe.py" "$M/final.pt" "$SPLIT" "$OUT/channels_overfit64_${STEPS}_s$SEED.json" --t0 200,400,600,800
