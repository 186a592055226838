"""Which atoms collide? (diagnosis) For each invalid generated crystal: the closest pair i, j and
whether their conditioning DOS (target atoms i, j) are identical (symmetry-equivalent sites)."""
import sys, json, numpy as np, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/validity_probe/validity_probe.py
from validity_probe import ChannelGuidance
from dosmatgen.checkpoint import load_model
from dosmatgen.data.split import split_records
from dosmatgen.model.batch import CrystalBatch
from dosmatgen.generate.sampler import sample
from pymatgen.core import Lattice, Structure
ckpt, seed = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(2)
diff, std, meta = load_model(ckpt, "cpu")
W = "work/recipe10k"
parts = split_records(f"{W}/store.npz", f"{W}/split.json")
recs = [r for p in ("val", "test") for r in parts[p] if r.structure_id.startswith("mp20")]
out = sample(diff, CrystalBatch.from_records(recs, std), guidance=ChannelGuidance(1, 0), steps=200, step_lr=0.0,
             seed=seed, progress=False)
ends = np.cumsum(out.num_atoms.numpy())
rows = []
for i, rec in enumerate(recs):
    a, b = ends[i] - rec.num_atoms, ends[i]
    z = out.atom_types[a:b].numpy(); x = out.frac_coords[a:b].numpy(); L = out.lattices[i].numpy()
    s = Structure(Lattice(L), z.tolist(), x)
    d = s.distance_matrix + np.eye(len(s)) * 99
    tgt = rec.to_structure()
    i0, j0 = np.unravel_index(np.argmin(d), d.shape)
    dos = rec.dos
    dd = np.abs(dos[i0] - dos[j0]).sum() / max(np.abs(dos[i0]).sum(), 1e-9)
    # distance between the same two atoms in the target
    rows.append(dict(id=rec.structure_id, n=len(s), dmin=float(d.min()), vr=s.volume / tgt.volume,
                     same_cond=bool(dd < 1e-3), cond_rel_l1=float(dd),
                     gen_pair=(int(z[i0]), int(z[j0])), tgt_pair=(int(rec.atomic_numbers[i0]), int(rec.atomic_numbers[j0])),
                     tgt_dist=float(tgt.get_distance(int(i0), int(j0))),
                     n_classes=len({tuple(np.round(r, 6)) for r in dos})))
inv = [r for r in rows if r["dmin"] < 0.5]
val = [r for r in rows if r["dmin"] >= 0.5]
print("invalid", len(inv), "of", len(rows))
print("invalid with identical conditioning on the colliding pair:", sum(r["same_cond"] for r in inv))
print("median volume ratio invalid %.2f valid %.2f" % (np.median([r["vr"] for r in inv]), np.median([r["vr"] for r in val])))
for r in sorted(inv, key=lambda r: r["n"]):
    print(r)
json.dump(rows, open(f"{W}/overlap_rows_{seed}.json", "w"))
