"""The Python API's job of the import-to-crystals benchmark (issue 36): from ``import dosmatgen`` to
16 crystals of 4 atoms at 200 sampler steps on the shipped demo model, conditioned on every site of
the built-in test crystal builtin-wurtzite-Ga-P (4 atoms). The command line's job is the same
sampling with ``dosmatgen sample`` (see run.sh); both write their crystals.

    OMP_NUM_THREADS=2 .venv/bin/python experiments/api_benchmark/api_job.py OUT_FOLDER
"""

import sys
from pathlib import Path

import dosmatgen as dm
from dosmatgen.paths import RESOURCES

out = Path(sys.argv[1])
model = dm.load_model("demo")
target = dm.target_from_store(RESOURCES / "builtin_dos.npz", "builtin-wurtzite-Ga-P")
crystals = dm.generate_crystals(model, target, n=16, num_atoms=4, steps=200, seed=0, progress=False)
out.mkdir(parents=True, exist_ok=True)
for i, c in enumerate(crystals):
    c.structure.to(filename=str(out / f"{i:02d}.cif"))
print(f"{sum(c.valid for c in crystals)} of {len(crystals)} valid")
