"""Probe: when do the final overlapping pairs come together? Record the per-atom-pair distance of
each crystal's final closest pair along the reverse chain (real test crystals, both options)."""
import sys, itertools, numpy as np, torch
torch.set_num_threads(2)
import dosmatgen.generate.sampler as S
from dosmatgen.checkpoint import load_model
from dosmatgen.data.split import load_split
from dosmatgen.data.store import DOSStore
from dosmatgen.generate.guidance import ClassifierFreeGuidance
from dosmatgen.model.batch import CrystalBatch
from dosmatgen.data.validity import validity_reason
diff, std, meta = load_model('work/demo/models/diffusion/best.pt', torch.device('cpu'))
recs = DOSStore('resources/builtin_dos.npz').records(list(load_split('results/repulsion_probe/split_mp20test.json')['test']))
g = ClassifierFreeGuidance(1.0, omega_geometry=0.0)
traj = []
orig = type(g).predict
def rec(self, diffusion, state, t):
    traj.append((int(t[0]), state.frac_coords.clone(), (state.lattices * diffusion.schedule.lattice_factor(state.num_atoms)).clone()))
    return orig(self, diffusion, state, t)
type(g).predict = rec
spec = CrystalBatch.from_records(recs, std)
seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
out = S.sample(diff, spec, guidance=g, t0=None, steps=200, step_lr=0.0, seed=seed, progress=False)
z, x, L, n = out.atom_types.numpy(), out.frac_coords.numpy(), out.lattices.numpy(), out.num_atoms.numpy()
o = np.concatenate([[0], np.cumsum(n)])
shifts = np.array(list(itertools.product([-1, 0, 1], repeat=3)))
def dist(xi, xj, lat):
    d = (xi - xj) % 1.0
    return np.min(np.linalg.norm((d[None] + shifts) @ lat, axis=-1))
for i in range(len(n)):
    _, why = validity_reason(z[o[i]:o[i+1]], x[o[i]:o[i+1]], L[i])
    if why is None: continue
    xs = x[o[i]:o[i+1]]
    best = min(((dist(xs[p], xs[q], L[i]), p, q) for p in range(n[i]) for q in range(p+1, n[i])))
    _, p, q = best
    curve = [(t, dist(fx[o[i]+p].numpy(), fx[o[i]+q].numpy(), lat[i].numpy()), abs(np.linalg.det(lat[i].numpy()))) for t, fx, lat in traj]
    pts = [c for c in curve if c[0] in (999, 800, 600, 400, 300, 200, 150, 100, 60, 30, 10, 5)]
    print(recs[i].structure_id, n[i], 'pair', p, q, ' '.join(f't{t}:{d:.2f}' for t, d, v in pts), f'final {best[0]:.3f} vol {abs(np.linalg.det(L[i])):.0f}')
