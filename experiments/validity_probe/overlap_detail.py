"""Per-crystal detail of overlaps (diagnosis only). Run from the repository root:

    .venv/bin/python experiments/validity_probe/overlap_detail.py CHECKPOINT SEEDS STEP_LR
"""
import sys, numpy as np, torch, json
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))  # validity_probe.py, beside this file
from validity_probe import ChannelGuidance
from dosmatgen.checkpoint import load_model
from dosmatgen.data.split import split_records
from dosmatgen.model.batch import CrystalBatch
from dosmatgen.generate.sampler import sample
from pymatgen.core import Lattice, Structure

ckpt = sys.argv[1]; seeds = [int(s) for s in sys.argv[2].split(",")]; step_lr = float(sys.argv[3])
torch.set_num_threads(2)
diff, std, meta = load_model(ckpt, "cpu")
parts = split_records("work/real_mixed_demo/store.npz", "work/real_mixed_demo/split.json")
recs = [r for p in ("val", "test") for r in parts[p] if r.structure_id.startswith("mp20")]
g = ChannelGuidance(1, 1)
rows = []
for seed in seeds:
    spec = CrystalBatch.from_records(recs[:80], std)
    o1 = sample(diff, spec, guidance=g, steps=200, step_lr=step_lr, seed=seed, progress=False)
    spec = CrystalBatch.from_records(recs[80:], std)
    o2 = sample(diff, spec, guidance=g, steps=200, step_lr=step_lr, seed=seed + 1, progress=False)
    for out, chunk in ((o1, recs[:80]), (o2, recs[80:])):
        ends = np.cumsum(out.num_atoms.numpy())
        for i, rec in enumerate(chunk):
            a, b = ends[i] - rec.num_atoms, ends[i]
            z = out.atom_types[a:b].numpy(); x = out.frac_coords[a:b].numpy(); L = out.lattices[i].numpy()
            s = Structure(Lattice(L), z.tolist(), x)
            d = s.distance_matrix + np.eye(len(s)) * 99
            tgt = Structure(Lattice(rec.lattice), rec.atomic_numbers.tolist(), rec.frac_coords)
            dt = tgt.distance_matrix + np.eye(len(tgt)) * 99
            i0, j0 = np.unravel_index(np.argmin(d), d.shape)
            rows.append(dict(seed=seed, id=rec.structure_id, n=len(s), tgt=tgt.composition.reduced_formula,
                             gen=s.composition.reduced_formula, dmin=float(d.min()), tmin=float(dt.min()),
                             pair=(s[i0].specie.symbol, s[j0].specie.symbol),
                             vr=s.volume / tgt.volume, sg_t=tgt.get_space_group_info()[0]))
inv = [r for r in rows if r["dmin"] < 0.5]
print("invalid", len(inv), "of", len(rows))
for r in sorted(inv, key=lambda r: r["id"]):
    print(r)
dm = np.array([r["dmin"] for r in rows])
print("dmin quantiles", np.quantile(dm, [0.05, 0.1, 0.25, 0.5]))
from collections import Counter
print("ids repeatedly invalid", Counter(r["id"] for r in inv).most_common(10))
json.dump(rows, open(f"work/validity/overlap_rows_{step_lr}.json", "w"))  # committed as overlap_rows_long30k_last_steplr0.json
