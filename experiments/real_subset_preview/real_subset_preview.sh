#!/usr/bin/env bash
# Issue 18, small preview: the demo model (trained on built-in prototypes only) asked to regenerate
# real MP-20 crystals from their GPAW site DOS, scored beside prototype test crystals, with a row
# per source in Tables 1-2 (`by_source` of `dosmatgen evaluate score`).
#
# 1. merge every labelled shard of resources/builtin (prototypes + the MP-20 crystals labelled so
#    far) into a preview store under work/ (the committed resources/builtin_dos.npz is left alone);
# 2. a split whose train/val parts are the demo's (what the demo model saw) and whose test part is
#    the demo's first N_PROTO test prototypes followed by every MP-20 crystal (none seen in training);
# 3. regenerate the test part at T = 1000 (and T = 200) with CFG, score it, and write the tables.
#
#   bash experiments/real_subset_preview/real_subset_preview.sh            # needs the demo models in work/demo/models
set -euo pipefail
cd "$(dirname "$0")/../.."   # the repository root
PY=${PY:-.venv/bin/python}
DOSMATGEN=${DOSMATGEN:-.venv/bin/dosmatgen}
W=work/real_subset_preview
OUT=${OUT:-results/real_subset_preview}
N_PROTO=${N_PROTO:-100}
THREADS=${THREADS:-2}
mkdir -p "$W" "$OUT"
for f in work/demo/models/diffusion/best.pt work/demo/models/surrogate/best.pt work/demo/data/split.json; do
  [ -e "$f" ] || { echo "missing $f (run the demo's models target first)"; exit 2; }
done

$DOSMATGEN data merge --source builtin --shards resources/builtin --out "$W/store.npz"
$DOSMATGEN data info --store "$W/store.npz" --figure "$OUT/data_info.png" > "$OUT/data_info.txt"

$PY - "$W/store.npz" work/demo/data/split.json "$W/split.json" "$N_PROTO" <<'EOF'
import json, sys
from dosmatgen.data.store import load_records
from dosmatgen.data.split import record_source
store, demo_split, out, n_proto = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ids = [r.structure_id for r in load_records(store)]
demo = json.load(open(demo_split))
real = [i for i in ids if record_source(i) == "mp20"]
split = {"train": demo["train"], "val": demo["val"], "test": demo["test"][:n_proto] + real,
         "store": store, "note": "demo train/val; test = the demo's first %d test prototypes + every MP-20 crystal" % n_proto}
json.dump(split, open(out, "w"), indent=1)
print(f"split: {len(split['train'])} train, {len(split['val'])} val, {n_proto} + {len(real)} test")
EOF

mkdir -p "$W/metrics"
for T in 1000 200; do
  OMP_NUM_THREADS=$THREADS $DOSMATGEN evaluate regenerate --checkpoint work/demo/models/diffusion/best.pt \
    --store "$W/store.npz" --split "$W/split.json" --subset test --guidance cfg --t0 $T --steps 200 \
    --batch-size 128 --step-lr 1e-05 --predictor-input corrected --device cpu --seed 0 \
    --out "$W/cfg_T$T.npz" --no-progress
  OMP_NUM_THREADS=$THREADS $DOSMATGEN evaluate score --generated "$W/cfg_T$T.npz" \
    --surrogate work/demo/models/surrogate/best.pt --store "$W/store.npz" --split "$W/split.json" \
    --match-timeout 10 --workers "$THREADS" --device cpu --out "$W/metrics/cfg_T$T.json" --no-progress
done
$DOSMATGEN evaluate tables --metrics-dir "$W/metrics" --out "$OUT"
