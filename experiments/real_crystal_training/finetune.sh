#!/usr/bin/env bash
# Fine-tuning on the real crystals (issue 35): a model of the demo's 375-real-crystal training
# continues on the real MP-20 crystals alone (the split's 375 real training crystals; validation,
# which picks best.pt: its 25 real validation crystals), lr 1e-4, STEPS steps of 64 (default
# 1,000), one thread. Seed 0 starts from the demo run's model ($RUN/diffusion.pt), seeds 1-2 from
# run.sh's base models in $WORK. Then `run.sh eval finetune SEED RECIPE` samples and scores it.
#
#   RUN=results/demo_run WORK=work/real_crystal_training/demo375 bash experiments/real_crystal_training/finetune.sh SEED [STEPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RUN=${RUN:-results/demo_run}
WORK=${WORK:-work/real_crystal_training/demo375}
seed=$1 steps=${2:-1000}
base="$WORK/models/base_s$seed/best.pt"
[ "$seed" = 0 ] && base="$RUN/diffusion.pt"
model="$WORK/models/finetune_s$seed"
[ -f "$model/final.pt" ] && exit 0
split="$WORK/split_real_only.json"
[ -f "$split" ] || "$PY" - "$RUN/split.json" "$split" <<'PYEOF'
import json, sys
from dosmatgen.data.split import record_source
split = json.load(open(sys.argv[1]))
json.dump({k: [i for i in split[k] if record_source(i) == "mp20"] for k in ("train", "val", "test")},
          open(sys.argv[2], "w"))
PYEOF
mkdir -p "$model"
OMP_NUM_THREADS=1 "$PY" -m dosmatgen.cli train --kind diffusion --store resources/builtin_dos.npz --split "$split" \
  --standardiser "$RUN/standardiser.json" --size compact --type-target posterior --init-from "$base" \
  --epochs 5000 --batch-size 64 --lr 1e-4 --max-steps "$steps" --device cpu --seed "$seed" --out "$model" \
  > "$model/train.log" 2>&1
