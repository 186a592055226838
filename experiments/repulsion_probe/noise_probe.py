"""Probe: scale the predictor's X noise by eta (monkeypatch), real test crystals, validity over seeds."""
import sys, numpy as np, torch
torch.set_num_threads(2)
import dosmatgen.generate.sampler as S
from dosmatgen.checkpoint import load_model
from dosmatgen.data.split import load_split
from dosmatgen.data.store import DOSStore
from dosmatgen.generate.guidance import ClassifierFreeGuidance
from dosmatgen.model.batch import CrystalBatch
from dosmatgen.data.validity import validity_reason
eta_x = float(sys.argv[1]); eta_l = float(sys.argv[2]); steps = int(sys.argv[3]); seeds = [int(s) for s in sys.argv[4].split(',')]
orig = S._Chain.randn
def patched(self, shape):
    z = orig(self, shape)
    if len(shape) == 2 and shape[1] == 3: return eta_x * z
    if len(shape) == 3: return eta_l * z
    return z
S._Chain.randn = patched
diff, std, meta = load_model('work/demo/models/diffusion/best.pt', torch.device('cpu'))
recs = DOSStore('resources/builtin_dos.npz').records(list(load_split('results/repulsion_probe/split_mp20test.json')['test']))
g = ClassifierFreeGuidance(1.0, omega_geometry=0.0)
vals = []
for seed in seeds:
    spec = CrystalBatch.from_records(recs, std)
    out = S.sample(diff, spec, guidance=g, t0=None, steps=steps, step_lr=0.0, seed=seed, progress=False)
    z, x, L, n = out.atom_types.numpy(), out.frac_coords.numpy(), out.lattices.numpy(), out.num_atoms.numpy()
    o = np.concatenate([[0], np.cumsum(n)]); ok = 0
    acc = (z == spec.atom_types.numpy()).mean()
    for i in range(len(n)):
        _, why = validity_reason(z[o[i]:o[i+1]], x[o[i]:o[i+1]], L[i]); ok += why is None
    vals.append(100 * ok / len(n)); print(f'eta_x {eta_x} eta_l {eta_l} steps {steps} seed {seed}: valid {vals[-1]:.1f}% elem acc {100*acc:.1f}%', flush=True)
print(f'eta_x {eta_x} eta_l {eta_l} steps {steps}: mean valid {np.mean(vals):.1f}%')
