"""Golden files for the generation redesign (issue 33): what the committed demo models sample through
the command line (the interface a redesign must not change), made before the first move and
compared after it by ``tests/test_golden.py``.

    python dev_scripts/golden.py [OUT]        # default OUT: tests/golden

Settings (:data:`SETTINGS`): ``evaluate regenerate`` of the first 20 test structures for each
guidance (cfg; classifier at the demo's scale 0.03; uncond) at T = 200 and 1000; one masked and one
template study setting (no relaxation); one ``dosmatgen sample`` call. All from the demo models
the goldens were made with (``results/demo_run/`` at 8ce38a6, 300 real training crystals; since the
demo retrained them, kept in ``tests/golden/demo_models_8ce38a6/``: the same git blobs), seed 0,
the demo's 200 strided steps, one torch thread. Each output is
reduced to ``ids``, ``offsets``, ``atomic_numbers``, ``frac_coords``, ``lattices`` (a study also
keeps its per-candidate surrogate ``dos_mae``; NaN where not scored).

Every setting runs in a child process with :data:`PINNED_ENV`, which fixes the CPU kernels, so that
a golden file made on one x86-64 machine holds on another: the first goldens, made with the
kernels each CPU picks, differed on an AMD EPYC (AVX2) from the CPU they were made on: coordinates
from 1e-7 apart at T = 200, more after 1,000 steps, and 10 of 92 atoms another element under
classifier guidance at T = 1000 (docs/reproducibility.md). Remade
under the pins at 8a830cf, whose sampling had matched those first goldens on their CPU (CI at stop 46).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "tests" / "golden" / "demo_models_8ce38a6"
STORE = REPO / "resources" / "builtin_dos.npz"


def _pack(ids, crystals, **extra) -> dict:
    counts = [len(z) for z, _, _ in crystals]
    return {"ids": np.array(ids, dtype=str), "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            "atomic_numbers": np.concatenate([z for z, _, _ in crystals]).astype(np.int64),
            "frac_coords": np.concatenate([x for _, x, _ in crystals]).astype(np.float64),
            "lattices": np.stack([lat for _, _, lat in crystals]).astype(np.float64), **extra}


def from_regen(path: Path) -> dict:
    """The arrays of an ``evaluate regenerate`` output file."""
    with np.load(path, allow_pickle=False) as z:
        off = z["offsets"]
        crystals = [(z["atomic_numbers"][a:b], z["frac_coords"][a:b], z["lattices"][i])
                    for i, (a, b) in enumerate(zip(off[:-1], off[1:]))]
        return _pack([str(s) for s in z["source_ids"]], crystals)


def from_study(folder: Path) -> dict:
    """The buildable candidates of a study folder (its CIFs) and their surrogate DOS MAE."""
    from pymatgen.core import Structure

    ids, crystals, mae = [], [], []
    with open(folder / "candidates.csv") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        hits = list((folder / "cifs").glob(f"*/{r['candidate_id']}.cif"))
        if not hits:
            continue
        s = Structure.from_file(str(hits[0]))
        ids.append(r["candidate_id"])
        crystals.append((np.array([site.specie.Z for site in s]), s.frac_coords, s.lattice.matrix))
        mae.append(float(r["dos_mae"]) if r.get("dos_mae") else np.nan)
    return _pack(ids, crystals, dos_mae=np.array(mae))


def from_sample(folder: Path) -> dict:
    """The crystals of a ``dosmatgen sample`` folder (its extxyz)."""
    from ase.io import read

    frames = read(str(folder / "structures.extxyz"), index=":")
    return _pack([a.info["structure_id"] for a in frames],
                 [(a.numbers, a.get_scaled_positions(wrap=False), a.cell.array) for a in frames])


def settings(work: Path) -> list[tuple[str, list[str], Callable[[Path], dict], Path]]:
    """``(name, dosmatgen argv, reducer, output path)`` of every golden setting."""
    run, store = str(RUN), str(STORE)
    out: list[tuple[str, list[str], Callable[[Path], dict], Path]] = []
    for g in ("cfg", "classifier", "uncond"):
        for t in (200, 1000):
            extra = ["--regressor", f"{run}/regressor.pt", "--guidance-scale", "0.03"] if g == "classifier" else []
            path = work / f"regen_{g}_T{t}.npz"
            out.append((f"regen_{g}_T{t}", ["evaluate", "regenerate", "--checkpoint", f"{run}/diffusion.pt", *extra,
                        "--store", store, "--split", f"{run}/split.json", "--subset", "test", "--limit", "20",
                        "--guidance", g, "--t0", str(t), "--steps", "200", "--batch-size", "128", "--seed", "0",
                        "--device", "cpu", "--no-progress", "--out", str(path)], from_regen, path))
    common = ["--checkpoint", f"{run}/diffusion.pt", "--surrogate", f"{run}/surrogate.pt", "--store", store,
              "--steps", "200", "--seed", "0", "--quiet"]
    out.append(("study_masked", ["studies", "masked", *common, "--n", "6", "--natoms", "4", "5",
                                 "--out", str(work / "masked")], from_study, work / "masked"))
    out.append(("study_template", ["studies", "template", *common, "--n", "6", "--t0", "200", "350",
                                   "--out", str(work / "template")], from_study, work / "template"))
    first = json.loads((RUN / "split.json").read_text())["test"][0]
    out.append(("sample", ["sample", "--checkpoint", f"{run}/diffusion.pt", "--store", store, "--target", f"{first}:0",
                           "--num-atoms", "4", "--condition-atoms", "0,1", "--n", "6", "--steps", "200", "--seed", "0",
                           "--device", "cpu", "--no-progress", "--format", "extxyz", "--out", str(work / "sample")],
                from_sample, work / "sample"))
    return out


#: Environment of a golden run: ATen's scalar kernels instead of the AVX2 / AVX-512 dispatch, MKL's
#: conditional-numerical-reproducibility path, oneDNN at SSE4.1 and one thread: the same floating-point
#: operations on every x86-64 CPU (read at library load, hence a child process).
PINNED_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "DNNL_MAX_CPU_ISA": "SSE41",
              "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_setting(name: str, work: Path, seed: int = 0, env: dict[str, str] | None = None) -> dict:
    """Run the setting ``name`` (with sampling seed ``seed``) in a child process under
    :data:`PINNED_ENV` (updated by ``env``); return its arrays."""
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, __file__, "--one", name, str(work), str(seed)],
                   env={**os.environ, **PINNED_ENV, **(env or {})}, check=True, stdout=subprocess.DEVNULL)
    with np.load(work / f"{name}.arrays.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _run_here(name: str, work: Path, seed: int) -> None:
    """The child of :func:`run_setting`: sample the setting, save its reduced arrays."""
    from dosmatgen.cli import main

    (_, argv, reducer, path), = [s for s in settings(work) if s[0] == name]
    argv = list(argv)
    argv[argv.index("--seed") + 1] = str(seed)
    if main(argv) != 0:
        raise RuntimeError(f"dosmatgen {' '.join(argv)} failed")
    np.savez(work / f"{name}.arrays.npz", **reducer(path))


def make(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, *_ in settings(Path(tmp)):
            np.savez_compressed(out / f"{name}.npz", **run_setting(name, Path(tmp)))
            print(f"{name}: done")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        _run_here(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
    else:
        make(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "tests" / "golden")
