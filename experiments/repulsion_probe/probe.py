"""Probe: PairRepulsion(distance, until) on the real test crystals, both sampling options, seeds."""
import sys, numpy as np, torch
torch.set_num_threads(2)
import dosmatgen.generate.sampler as S
from dosmatgen.checkpoint import load_model
from dosmatgen.data.split import load_split
from dosmatgen.data.store import DOSStore
from dosmatgen.generate.guidance import ClassifierFreeGuidance
from dosmatgen.model.batch import CrystalBatch
from dosmatgen.generate.repulsion import PairRepulsion
from dosmatgen.data.validity import validity_reason
dist = float(sys.argv[1]); until = int(sys.argv[2]); steps = int(sys.argv[3]); seeds = [int(s) for s in sys.argv[4].split(',')]
steplr = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
og = None if (len(sys.argv) > 6 and sys.argv[6] == 'none') else 0.0
diff, std, meta = load_model('work/demo/models/diffusion/best.pt', torch.device('cpu'))
recs = DOSStore('resources/builtin_dos.npz').records(list(load_split('results/repulsion_probe/split_mp20test.json')['test']))
g = ClassifierFreeGuidance(1.0, omega_geometry=og)
rep = PairRepulsion(dist, until) if dist > 0 else None
vals, accs, mins = [], [], []
for seed in seeds:
    spec = CrystalBatch.from_records(recs, std)
    out = S.sample(diff, spec, guidance=g, t0=None, steps=steps, step_lr=steplr, seed=seed, progress=False, repulsion=rep)
    z, x, L, n = out.atom_types.numpy(), out.frac_coords.numpy(), out.lattices.numpy(), out.num_atoms.numpy()
    o = np.concatenate([[0], np.cumsum(n)]); ok = 0
    accs.append(100 * (z == spec.atom_types.numpy()).mean())
    for i in range(len(n)):
        s, why = validity_reason(z[o[i]:o[i+1]], x[o[i]:o[i+1]], L[i]); ok += why is None
        if s is not None and len(s) > 1: mins.append(np.min(s.distance_matrix + 99 * np.eye(len(s))))
    vals.append(100 * ok / len(n))
print(f'dist {dist} until {until} steps {steps} step_lr {steplr} og {og}: valid {np.round(vals,1)} mean {np.mean(vals):.1f}%  elem acc {np.mean(accs):.1f}%  median min-dist {np.median(mins):.2f} A')
