"""Scale test without the data (issue 17, part 4): how the pipeline's stages grow with the size of
the dataset, on a synthetic store made here (nothing downloaded, nothing committed but results).

For each size N (default 5k, 10k, 20k, 50k crystals) a synthetic store is generated and every
stage below runs in its **own subprocess**, so that the peak resident memory (``VmHWM``, reset at
the start of the stage body, :class:`dosmatgen.device.PeakMemory`) is that stage's alone:

1. ``store``       write the store (``save_records``) and load it back (``DOSStore`` + every
                   record, i.e. ``load_records``); generating the synthetic crystals is not timed.
2. ``split``       seeded 0.6/0.2/0.2 split + DOS standardiser fitted on the training split
                   (``make_split``, ``save_split``, ``fit_standardiser_on_train``).
3. ``train_epoch`` one epoch of the joint diffusion model at the **tiny** size through the
                   package's real training path, ``dosmatgen.training.train`` (Adam, clip,
                   validation pass over the val split, checkpoint), batch 256, ``type_target``
                   posterior (the demo default).
4. ``regenerate``  ``dosmatgen.evaluate.regenerate.regenerate`` of the first ``--n-test`` (1,000)
                   test crystals with classifier-free guidance (omega 1) from the prior in
                   ``--steps`` (5) reverse steps, with the checkpoint of stage 3.
5. ``score``       ``dosmatgen.evaluate.score.score_generated`` on those crystals without novelty:
                   surrogate DOS MAEs (an *untrained* tiny surrogate: the cost is real, the values
                   are not), structure match (StructureMatcher), composition match, element
                   accuracy, validity and uniqueness (among the 1,000).
6. ``novelty``     novelty of the valid generated crystals against the training split, built as
                   ``dosmatgen evaluate score`` builds it (every training record -> Structure,
                   ``metrics.Novelty``, which buckets by reduced formula).
7. ``novelty_stress``  the same against the 1,000 test crystals themselves as queries: each has
                   the composition distribution of the training set, so (unlike the barely
                   trained model's output) many share a reduced formula with training crystals and
                   StructureMatcher really runs -- what novelty costs for a well-trained model.

Synthetic crystals (:func:`synthetic_records`): MP-20-like atom counts (1-20,
``dosmatgen.bench._MP20_WEIGHTS``), 1-4 species from Z 1-83 (noble gases, Tc and Pm left out,
oxygen 10x as likely), 18 Å^3 per atom, near-orthorhombic cells, atoms placed by random sequential
addition so that no two atoms (periodic images included) are closer than 1.5 Å. A fraction
``P_REUSE`` of the crystals reuses the composition of an earlier crystal (picked uniformly among
all earlier crystals, so popular formulas grow more popular, as polymorphs do in Materials
Project), possibly with another number of formula units: same-formula buckets are realistic
and novelty has real matching work. Site DOS: per-element templates (2-4 Gaussian bands and a
conduction-band step on the store's 400-point grid, -10..10 eV) shifted by up to ±0.5 eV and
scaled by 0.8-1.2 per site; non-negative and finite by construction.

    .venv/bin/python experiments/scale_test/scale_test.py   # 5k 10k 20k 50k
    .venv/bin/python experiments/scale_test/scale_test.py --sizes 2000 4000   # quick look
    .venv/bin/python experiments/scale_test/scale_test.py --report-only   # redraw .md / .png from the .json
    .venv/bin/python experiments/scale_test/scale_test.py --redraw-from results/scale_test.json   # figure only

Every stage process runs with ``--threads`` (default 1) torch / OpenMP / BLAS threads: on the
2 cores shared with other jobs, 2 torch threads made the sampler ~3x slower (and its CPU time 3x
larger, spin-waiting) than 1 thread, and made repeated measurements of identical work differ 3x.

Outputs: ``results/scale_test.json`` (one row per size x stage: wall_s, cpu_s, peak_rss_mb, ...,
the environment and the command line), ``results/scale_test.md`` (table and log-log slopes),
``figures/scale_test.png`` and ``.pdf`` (``--redraw-from`` redraws only these). To add a stage, see
:func:`stage_batched_relax` (``ADD A STAGE HERE``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # the repository root
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from dosmatgen.bench import _MP20_COUNTS, _MP20_WEIGHTS  # noqa: E402  (reuse the bench's MP-20 sizes)
from dosmatgen.data.schema import CrystalRecord  # noqa: E402
from dosmatgen.dos.grid import ENERGY_GRID, N_DOS  # noqa: E402
from dosmatgen.io import atomic_save_json, atomic_write  # noqa: E402

DEFAULT_SIZES = (5000, 10000, 20000, 50000)
#: Smallest allowed distance (Å) between two atoms of a synthetic crystal, periodic images included.
MIN_SEPARATION = 1.5
#: Volume per atom (Å^3) of the synthetic cells (MP-20-like density).
VOLUME_PER_ATOM = 18.0
#: Share of crystals that reuse the composition of an earlier crystal (a new polymorph).
P_REUSE = 0.4
#: Number of species per composition (1, 2, 3, 4) and their weights (ternaries most common, as in MP-20).
N_SPECIES_WEIGHTS = np.array([0.05, 0.30, 0.50, 0.15])
#: The issue's bars.
MAX_SLOPE = 1.1
MAX_PEAK_MB_AT_LARGEST = 8 * 1024
DEFAULT_JSON = ROOT / "results" / "scale_test.json"
DEFAULT_MD = ROOT / "results" / "scale_test.md"
DEFAULT_PNG = ROOT / "figures" / "scale_test.png"


# =============================================================================================
# synthetic data
# =============================================================================================
def element_pool() -> tuple[np.ndarray, np.ndarray]:
    """Elements the synthetic crystals use (Z 1-83 without noble gases, Tc, Pm) and their
    sampling probabilities (oxygen 10x)."""
    z = np.array([v for v in range(1, 84) if v not in (2, 10, 18, 36, 54, 43, 61)])
    w = np.where(z == 8, 10.0, 1.0)
    return z, w / w.sum()


def element_templates(max_z: int = 100) -> np.ndarray:
    """``(max_z + 1, 400)`` template site DOS per element (row 0 unused): 2-4 Gaussian bands below
    +3 eV and a smooth conduction-band step above a per-element gap, in states/eV/site. The same
    for every call (each element has its own fixed seed)."""
    e = ENERGY_GRID
    out = np.zeros((max_z + 1, N_DOS))
    for z in range(1, max_z + 1):
        r = np.random.default_rng(1000 + z)
        for _ in range(int(r.integers(2, 5))):
            c, w, a = r.uniform(-8.0, 1.0), r.uniform(0.3, 1.5), r.uniform(0.2, 2.0)
            out[z] += a * np.exp(-0.5 * ((e - c) / w) ** 2)
        gap = r.uniform(0.0, 3.0)
        out[z] += r.uniform(0.05, 0.4) / (1.0 + np.exp(-(e - gap) / 0.3))
    return out


_SHIFTS = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)


def _random_lattice(rng: np.random.Generator, k: int) -> np.ndarray:
    a = (VOLUME_PER_ATOM * k) ** (1 / 3)
    while True:
        lat = np.diag(a * rng.uniform(0.9, 1.1, 3)) + rng.normal(0.0, 0.05 * a, (3, 3)) * (1 - np.eye(3))
        lat *= (VOLUME_PER_ATOM * k / abs(np.linalg.det(lat))) ** (1 / 3)
        nonzero = _SHIFTS[np.any(_SHIFTS != 0, axis=1)]
        if np.linalg.norm(nonzero @ lat, axis=1).min() >= MIN_SEPARATION:  # an atom and its own image
            return lat


def _place_atoms(rng: np.random.Generator, k: int, lat: np.ndarray, min_sep: float,
                 tries: int = 200) -> np.ndarray | None:
    """Random sequential addition of ``k`` fractional positions at least ``min_sep`` Å apart
    (minimum image plus the 27 neighbouring cells); ``None`` when it gets stuck."""
    pos = np.empty((k, 3))
    pos[0] = rng.random(3)
    cart_shifts = _SHIFTS @ lat
    min_sq = min_sep * min_sep
    for m in range(1, k):
        for _ in range(tries):
            cand = rng.random((8, 3))
            d = cand[:, None, :] - pos[None, :m, :]
            d -= np.round(d)
            cart = (d @ lat)[:, :, None, :] + cart_shifts  # (8, m, 27, 3)
            sq = (cart * cart).sum(-1).min(axis=(1, 2))  # squared distance to the nearest atom/image
            ok = np.flatnonzero(sq >= min_sq)
            if ok.size:
                pos[m] = cand[ok[0]]
                break
        else:
            return None
    return pos


def _new_composition(rng: np.random.Generator, k: int, pool: np.ndarray, p: np.ndarray) -> np.ndarray:
    n_species = min(k, int(rng.choice(4, p=N_SPECIES_WEIGHTS)) + 1)
    elems = rng.choice(pool, n_species, replace=False, p=p)
    counts = 1 + rng.multinomial(k - n_species, np.full(n_species, 1.0 / n_species))
    return np.repeat(elems, counts)


def _reduced(z: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    elems, counts = np.unique(z, return_counts=True)
    g = int(np.gcd.reduce(counts))
    return tuple(int(e) for e in elems), tuple(int(c // g) for c in counts)


def synthetic_records(n: int, seed: int = 0, min_sep: float = MIN_SEPARATION,
                      id_prefix: str = "synth") -> list[CrystalRecord]:
    """``n`` synthetic labelled crystals (module docstring); deterministic in ``(n, seed)``."""
    rng = np.random.default_rng(seed)
    pool, p_elem = element_pool()
    p_count = _MP20_WEIGHTS / _MP20_WEIGHTS.sum()
    templates = element_templates()
    grid_idx = np.arange(N_DOS)
    formulas: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    out: list[CrystalRecord] = []
    for i in range(n):
        if formulas and rng.random() < P_REUSE:  # a new polymorph of an earlier composition
            elems, red = formulas[int(rng.integers(len(formulas)))]
            per_unit = sum(red)
            units = int(rng.integers(1, 20 // per_unit + 1))
            z = np.repeat(np.array(elems), np.array(red) * units)
        else:
            z = _new_composition(rng, int(rng.choice(_MP20_COUNTS, p=p_count)), pool, p_elem)
        rng.shuffle(z)
        k = len(z)
        while True:
            lat = _random_lattice(rng, k)
            frac = _place_atoms(rng, k, lat, min_sep)
            if frac is not None:
                break
        shift = rng.integers(-10, 11, k)  # ±0.5 eV in bins of 0.05 eV
        idx = np.clip(grid_idx[None, :] - shift[:, None], 0, N_DOS - 1)
        dos = templates[z][np.arange(k)[:, None], idx] * rng.uniform(0.8, 1.2, (k, 1))
        formulas.append(_reduced(z))
        out.append(CrystalRecord(f"{id_prefix}-{i:06d}", z, frac, lat, dos.astype(np.float32),
                                 {"source": "synthetic-scale-test", "seed": seed}))
    return out


def periodic_min_distance(frac: np.ndarray, lat: np.ndarray) -> float:
    """Smallest distance (Å) between two atoms or an atom and its own image, with the LLL-reduced
    lattice of pymatgen (:func:`dosmatgen.data.validity.min_periodic_distance`), independent of
    the generator's own check."""
    from pymatgen.core import Lattice, Structure

    from dosmatgen.data.validity import min_periodic_distance

    return min_periodic_distance(Structure(Lattice(lat), ["H"] * len(frac), frac))


def check_records(records: list[CrystalRecord], min_sep: float = MIN_SEPARATION) -> list[str]:
    """Problems of synthetic records (empty list: none): atom counts outside 1-20, atoms closer
    than ``min_sep``, a DOS that is missing, not (N, 400), negative or not finite, repeated ids."""
    problems = []
    seen: set[str] = set()
    for r in records:
        sid = r.structure_id
        if sid in seen:
            problems.append(f"{sid}: repeated id")
        seen.add(sid)
        if not 1 <= r.num_atoms <= 20:
            problems.append(f"{sid}: {r.num_atoms} atoms (MP-20 has 1-20)")
        d = periodic_min_distance(r.frac_coords, r.lattice)
        if d < min_sep - 1e-9:
            problems.append(f"{sid}: atoms {d:.3f} Å apart (< {min_sep} Å)")
        if r.dos is None or r.dos.shape != (r.num_atoms, N_DOS):
            problems.append(f"{sid}: DOS missing or of shape {None if r.dos is None else r.dos.shape}")
        elif not np.all(np.isfinite(r.dos)):
            problems.append(f"{sid}: DOS not finite")
        elif r.dos.min() < 0:
            problems.append(f"{sid}: negative DOS {float(r.dos.min()):.3g}")
    return problems


# =============================================================================================
# stages
# =============================================================================================
@dataclass
class StageContext:
    """What a stage receives: the size, its work folder and the sweep's settings."""

    size: int
    workdir: Path
    settings: dict[str, Any]

    @property
    def store(self) -> Path:
        return self.workdir / "store.npz"

    @property
    def split(self) -> Path:
        return self.workdir / "split.json"

    @property
    def standardiser(self) -> Path:
        return self.workdir / "standardiser.json"

    @property
    def train_dir(self) -> Path:
        return self.workdir / "diffusion"

    @property
    def generated(self) -> Path:
        return self.workdir / "generated.npz"


@dataclass
class Stage:
    name: str
    run: Callable[[StageContext, Any], dict[str, Any]]
    prepare: Callable[[StageContext], Any] | None = None  # untimed, before the memory reset
    doc: str = ""


STAGES: dict[str, Stage] = {}


def stage(name: str, prepare: Callable[[StageContext], Any] | None = None):
    """Register ``fn(ctx, prepared) -> detail dict`` as a stage (run in this order)."""

    def deco(fn):
        STAGES[name] = Stage(name, fn, prepare, (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)


def _prepare_store(ctx: StageContext) -> Any:
    t0 = time.perf_counter()
    records = synthetic_records(ctx.size, seed=ctx.settings["seed"])
    return records, _since(t0)


@stage("store", prepare=_prepare_store)
def stage_store(ctx: StageContext, prepared: Any) -> dict[str, Any]:
    """Write the synthetic store and load every record back (DOSStore)."""
    from dosmatgen.data.store import DOSStore, save_records

    records, gen_s = prepared
    t0 = time.perf_counter()
    save_records(ctx.store, records, meta={"source": "synthetic-scale-test", "seed": ctx.settings["seed"]})
    write_s = _since(t0)
    n_atoms = sum(r.num_atoms for r in records)
    formulas = {_reduced(r.atomic_numbers) for r in records}
    del records
    t0 = time.perf_counter()
    st = DOSStore(ctx.store)
    loaded = st.records()
    load_s = _since(t0)
    assert len(loaded) == ctx.size and st.total_atoms == n_atoms
    return {"generate_s_untimed": gen_s, "write_s": write_s, "load_s": load_s, "atoms": n_atoms,
            "mean_atoms": round(n_atoms / ctx.size, 2), "distinct_formulas": len(formulas),
            "store_mb": round(ctx.store.stat().st_size / 2 ** 20, 1)}


@stage("split")
def stage_split(ctx: StageContext, _: Any) -> dict[str, Any]:
    """Seeded split and DOS standardiser fitted on the training split."""
    from dosmatgen.data.split import fit_standardiser_on_train, make_split, save_split
    from dosmatgen.data.store import DOSStore

    t0 = time.perf_counter()
    st = DOSStore(ctx.store)
    split = make_split(st.ids, seed=ctx.settings["seed"])
    save_split(ctx.split, split, seed=ctx.settings["seed"])
    split_s = _since(t0)
    t0 = time.perf_counter()
    std = fit_standardiser_on_train(st, split)
    std.save(ctx.standardiser)
    return {"split_s": split_s, "standardiser_s": _since(t0), **{f"n_{k}": len(v) for k, v in split.items()}}


def _records_of(ctx: StageContext, part: str, limit: int | None = None):
    from dosmatgen.data.split import load_split
    from dosmatgen.data.store import DOSStore

    st = DOSStore(ctx.store)
    ids = load_split(ctx.split)[part]
    return st, st.records(ids[:limit] if limit else ids)


@stage("train_epoch")
def stage_train_epoch(ctx: StageContext, _: Any) -> dict[str, Any]:
    """One epoch of the tiny joint diffusion model through dosmatgen.training.train."""
    from dosmatgen.model.factory import model_config_for_size
    from dosmatgen.data.standardise import DOSStandardiser
    from dosmatgen.training import TrainConfig, train

    t0 = time.perf_counter()
    _, tr = _records_of(ctx, "train")
    _, va = _records_of(ctx, "val")
    std = DOSStandardiser.load(ctx.standardiser)
    load_s = _since(t0)
    cfg = model_config_for_size("diffusion", "tiny")
    cfg["diffusion"] = {**cfg.get("diffusion", {}), "type_target": ctx.settings["type_target"]}
    if ctx.train_dir.exists():
        shutil.rmtree(ctx.train_dir)
    t0 = time.perf_counter()
    train("diffusion", cfg, tr, va, std,
          TrainConfig(epochs=1, batch_size=ctx.settings["train_batch"], device="cpu", progress=False,
                      seed=ctx.settings["seed"]), ctx.train_dir, resume="never")
    train_s = _since(t0)
    row = json.loads((ctx.train_dir / "metrics.jsonl").read_text().splitlines()[-1])
    return {"load_s": load_s, "train_call_s": train_s, "epoch_s": round(row["epoch_seconds"], 3),
            "crystals_per_s": round(row["crystals_per_s"], 1), "steps": row["step"],
            "train_loss": round(row["train_loss"], 4), "val_loss": round(row.get("val_loss", float("nan")), 4),
            "n_train": len(tr), "n_val": len(va), "model_config": cfg}


@stage("regenerate")
def stage_regenerate(ctx: StageContext, _: Any) -> dict[str, Any]:
    """Regenerate the first n_test test crystals (CFG, omega 1, from the prior, few steps)."""
    from dosmatgen.checkpoint import load_model
    from dosmatgen.generate.options import SamplerOptions
    from dosmatgen.generate.runner import regenerate

    t0 = time.perf_counter()
    diffusion, std, _meta = load_model(ctx.train_dir / "last.pt", "cpu")
    _, test = _records_of(ctx, "test", ctx.settings["n_test"])
    load_s = _since(t0)
    chunks = ctx.generated.with_name(ctx.generated.name + ".chunks")
    if chunks.exists():
        shutil.rmtree(chunks)
    options = SamplerOptions(guidance="cfg", steps=ctx.settings["steps"], batch_size=ctx.settings["regen_batch"],
                             seed=ctx.settings["seed"])
    gen = regenerate(diffusion, std, test, ctx.generated, options, progress=False)
    return {"load_s": load_s, "sampling_s": round(gen.meta["sampling_seconds"], 3), "n": len(gen),
            "steps": ctx.settings["steps"], "batch_size": ctx.settings["regen_batch"]}


@stage("score")
def stage_score(ctx: StageContext, _: Any) -> dict[str, Any]:
    """score_generated without novelty: surrogate MAEs, match rates, element accuracy, validity, uniqueness."""
    import torch

    from dosmatgen.model.factory import model_config_for_size
    from dosmatgen.data.standardise import DOSStandardiser
    from dosmatgen.generate.generated import load_generated
    from dosmatgen.evaluate.score import score_generated
    from dosmatgen.model.factory import build_model

    t0 = time.perf_counter()
    gen = load_generated(ctx.generated)
    st, refs = _records_of(ctx, "test", ctx.settings["n_test"])
    references = {r.structure_id: r for r in refs}
    torch.manual_seed(ctx.settings["seed"])
    surrogate = build_model("surrogate", model_config_for_size("surrogate", "tiny"))  # untrained: cost only
    std = DOSStandardiser.load(ctx.standardiser)
    load_s = _since(t0)
    res = score_generated(gen, references, surrogate, std, training=None,
                          match_timeout_s=ctx.settings["match_timeout"], workers=1, progress=False)
    m = res["metrics"]
    values = {k: (None if m[k]["value"] is None else round(m[k]["value"], 3)) for k in m}
    return {"load_s": load_s, "seconds": {k: round(v, 3) for k, v in res["seconds"].items()},
            "values": values, "uniqueness_counts": m["uniqueness"]["counts"],
            "structure_match_excluded": m["structure_match_rate"]["excluded"],
            "note": "surrogate untrained (timing only); the diffusion model had one epoch"}


def _novelty(ctx: StageContext, queries: str) -> dict[str, Any]:
    from dosmatgen.evaluate import metrics as M

    t0 = time.perf_counter()
    if queries == "generated":
        from dosmatgen.generate.generated import load_generated

        items = list(load_generated(ctx.generated).items())
        valid = [s if why is None else None for s, why in (M.validity_reason(*it) for it in items)]
    else:
        _, refs = _records_of(ctx, "test", ctx.settings["n_test"])
        valid = [r.to_structure() for r in refs]
    query_s = _since(t0)
    t0 = time.perf_counter()
    # as `dosmatgen evaluate score` builds it: every training record (with its DOS) -> Structure
    _, train_recs = _records_of(ctx, "train")
    training = [r.to_structure() for r in train_recs]
    del train_recs
    build_s = _since(t0)
    t0 = time.perf_counter()
    nov = M.Novelty(training, ctx.settings["match_timeout"], workers=1, progress=False)
    bucket_s = _since(t0)
    sizes = [len(nov.buckets.get(s.composition.reduced_formula, [])) for s in valid if s is not None]
    t0 = time.perf_counter()
    res = nov.compute(valid)
    return {"queries": queries, "query_build_s": query_s, "training_structures_s": build_s, "bucket_s": bucket_s,
            "match_s": _since(t0), "n_training": len(training), "n_valid_queries": len(sizes),
            "queries_with_same_formula_in_training": int(sum(1 for s in sizes if s)),
            "candidate_pairs": int(sum(sizes)), "largest_bucket": max((len(v) for v in nov.buckets.values()), default=0),
            "value": None if res.value is None else round(res.value, 2), "counts": res.counts}


@stage("novelty")
def stage_novelty(ctx: StageContext, _: Any) -> dict[str, Any]:
    """Novelty of the valid generated crystals against the training split."""
    return _novelty(ctx, "generated")


@stage("novelty_stress")
def stage_novelty_stress(ctx: StageContext, _: Any) -> dict[str, Any]:
    """Novelty of the n_test test crystals against the training split (many same-formula pairs)."""
    return _novelty(ctx, "test_references")


# ---------------------------------------------------------------------------------------------
# ADD A STAGE HERE. A stage is a function ``fn(ctx, prepared) -> dict`` registered with
# ``@stage("name")`` (optionally ``prepare=`` an untimed setup run before the memory reset); it
# runs after the stages above, in its own subprocess, is timed (wall, CPU) and its peak RSS is
# measured by the runner; the dict it returns is stored as the row's ``detail``. Inputs are in
# ``ctx.workdir`` (``ctx.store``, ``ctx.split``, ``ctx.standardiser``, ``ctx.train_dir / "last.pt"``,
# ``ctx.generated``), settings in ``ctx.settings``. Register it by uncommenting the decorator.
# ---------------------------------------------------------------------------------------------
# @stage("batched_relax")
def stage_batched_relax(ctx: StageContext, _: Any) -> dict[str, Any]:
    """Batched MLFF relaxation of 200 generated crystals (placeholder, not yet registered)."""
    # e.g.:  from dosmatgen.evaluate.batched_relax import ...   (module being written)
    #        gen = load_generated(ctx.generated).subset(range(200)); relax them; return timings
    raise NotImplementedError("batched relaxation stage: dosmatgen.evaluate.batched_relax is not wired in yet")


# =============================================================================================
# runner: one subprocess per (size, stage)
# =============================================================================================
def run_stage_here(name: str, ctx: StageContext) -> dict[str, Any]:
    """Run stage ``name`` in this process: untimed ``prepare``, then the timed body with the peak
    RSS reset at its start (VmHWM)."""
    import torch

    from dosmatgen.device import PeakMemory

    st = STAGES[name]
    if ctx.settings.get("threads"):
        torch.set_num_threads(int(ctx.settings["threads"]))
    prepared = st.prepare(ctx) if st.prepare else None
    load0 = os.getloadavg()
    with PeakMemory(torch.device("cpu")) as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        detail = st.run(ctx, prepared)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"size": ctx.size, "stage": name, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "peak_rss_mb": round(mem.peak_mib, 1), "rss_at_start_mb": round(mem.before_mib, 1),
            "mem_method": mem.method, "torch_threads": torch.get_num_threads(),
            "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "detail": detail}


def run_stage_subprocess(name: str, ctx: StageContext, timeout_s: float) -> dict[str, Any]:
    row_path = ctx.workdir / f"row_{name}.json"
    row_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--child-size", str(ctx.size),
           "--workdir", str(ctx.workdir), "--child-settings", json.dumps(ctx.settings)]
    env = dict(os.environ)
    if ctx.settings.get("threads"):  # numeric-library pools sized before the child imports them
        from dosmatgen.threads import THREAD_ENV

        env.update({k: str(ctx.settings["threads"]) for k in THREAD_ENV})
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, err = "timeout", (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
    process_s = round(time.perf_counter() - t0, 3)
    if rc == 0 and row_path.exists():
        row = json.loads(row_path.read_text())
        row["process_wall_s"] = process_s
        return row
    return {"size": ctx.size, "stage": name, "error": f"exit {rc}: {err.strip()[-2000:]}", "process_wall_s": process_s}


def _child(args: argparse.Namespace) -> int:
    ctx = StageContext(args.child_size, Path(args.workdir), json.loads(args.child_settings))
    row = run_stage_here(args.child, ctx)
    atomic_save_json(ctx.workdir / f"row_{args.child}.json", row)
    return 0


# =============================================================================================
# report
# =============================================================================================
def fit_slopes(rows: list[dict[str, Any]], key: str = "wall_s") -> dict[str, float | None]:
    """Least-squares slope of log(key) against log(size) per stage (``None``: fewer than 2 sizes)."""
    out: dict[str, float | None] = {}
    for name in dict.fromkeys(r["stage"] for r in rows):
        pts = [(r["size"], r[key]) for r in rows if r["stage"] == name and r.get(key) and r[key] > 0]
        if len({s for s, _ in pts}) < 2:
            out[name] = None
            continue
        x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
        out[name] = round(float(np.polyfit(x, y, 1)[0]), 3)
    return out


def _fmt_t(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def render_markdown(result: dict[str, Any]) -> str:
    rows = [r for r in result["rows"] if "error" not in r]
    errors = [r for r in result["rows"] if "error" in r]
    sizes = sorted({r["size"] for r in result["rows"]})
    stages = list(dict.fromkeys(r["stage"] for r in result["rows"]))
    by = {(r["stage"], r["size"]): r for r in rows}
    slopes, mem_slopes = fit_slopes(rows), fit_slopes(rows, "peak_rss_mb")
    env = result["environment"]
    lines = ["# Scale test without the data (issue 17, part 4)", "",
             f"Command: `{result['command']}`", "",
             f"{result['note']}", "",
             f"Environment: {env.get('cpu', '?')}, {env.get('nproc')} cores, torch {env.get('torch')}, "
             f"{result.get('settings', {}).get('threads') or 'default'} thread(s) per stage process, dosmatgen {env.get('dosmatgen')} at {result.get('git_commit')}; "
             f"load average before {env.get('loadavg_1_5_15')}, after {env.get('loadavg_after')}; "
             f"sweep wall time {result.get('sweep_wall_s', 0) / 60:.1f} min.", "",
             "Each cell: wall time (s) / peak RSS (MB) of the stage's own process (VmHWM reset at the start of the "
             "stage body, so the ~0.22 GB of the interpreter, torch and pymatgen is included). Slopes: "
             "least-squares slope of log(wall time) and log(peak RSS) against log(N) over the sizes; the "
             f"issue's bar is time slope <= {MAX_SLOPE} and peak memory <= {MAX_PEAK_MB_AT_LARGEST / 1024:.0f} GB "
             "at the largest size.", "",
             "| stage | " + " | ".join(f"N = {s:,}" for s in sizes) + " | time slope | memory slope | bar |",
             "|---|" + "---|" * len(sizes) + "---|---|---|"]
    largest = max(sizes) if sizes else None
    for name in stages:
        cells = []
        for s in sizes:
            r = by.get((name, s))
            cells.append("failed" if r is None else f"{_fmt_t(r['wall_s'])} s / {r['peak_rss_mb']:.0f} MB")
        sl, ms = slopes.get(name), mem_slopes.get(name)
        peak_l = by.get((name, largest), {}).get("peak_rss_mb")
        ok = (sl is not None and sl <= MAX_SLOPE) and (peak_l is not None and peak_l <= MAX_PEAK_MB_AT_LARGEST)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'–' if sl is None else f'{sl:.2f}'} | "
                     f"{'–' if ms is None else f'{ms:.2f}'} | {'pass' if ok else 'FAIL'} |")
    cpu_slopes = fit_slopes(rows, "cpu_s")
    lines += ["", "CPU seconds per stage (all threads of the stage's process; less sensitive to the other jobs "
              "than wall time) and their log-log slope:", "",
              "| stage | " + " | ".join(f"N = {s:,}" for s in sizes) + " | CPU-time slope |",
              "|---|" + "---|" * len(sizes) + "---|"]
    for name in stages:
        sl = cpu_slopes.get(name)
        lines.append(f"| {name} | " + " | ".join(_fmt_t(by[(name, s)]["cpu_s"]) if (name, s) in by else "–"
                                                for s in sizes) + f" | {'–' if sl is None else f'{sl:.2f}'} |")
    if errors:
        lines += ["", "Failed stages:", ""] + [f"- {r['stage']} at N = {r['size']}: {r['error'][:300]}" for r in errors]
    lines += ["", "## Stages", ""]
    for name in stages:
        st = STAGES.get(name)
        lines.append(f"- **{name}**: {st.doc if st else ''}")
    if result.get("discussion"):
        lines += ["", "## Reading", "", result["discussion"].strip()]
    lines += ["", "Details (sub-timings, counts, metric values) are in `results/scale_test.json`, row `detail`.", ""]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> list[Path]:
    """Wall time (log-log) and peak memory of every stage against N; writes ``path`` (PNG) and a PDF
    beside it, returns both."""
    from matplotlib.ticker import NullLocator

    from dosmatgen.plots.style import figure_style, new_figure, save_figure

    rows = result.get("rows") if isinstance(result, dict) else None
    rows = [r for r in rows or [] if isinstance(r, dict) and "error" not in r]
    if not rows:
        raise ValueError("no successful rows (size x stage) to draw")
    missing = sorted({k for r in rows for k in ("size", "stage", "wall_s", "peak_rss_mb") if k not in r})
    if missing:
        raise ValueError(f"rows lack {', '.join(missing)}")
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    slopes = fit_slopes(rows)
    sizes = sorted({r["size"] for r in rows})
    markers = "osD^v<>ph*"
    with figure_style():
        fig, axes = new_figure(1, 2, panel_size=(3.75, 3.2))
        ax_t, ax_m = axes[0]
        for i, name in enumerate(stages):
            pts = sorted((r["size"], r["wall_s"], r["peak_rss_mb"]) for r in rows if r["stage"] == name)
            x = [p[0] for p in pts]
            sl = slopes.get(name)
            label = f"{name} (slope {sl:.2f})" if sl is not None else name
            ax_t.plot(x, [p[1] for p in pts], marker=markers[i % len(markers)], label=label)
            ax_m.plot(x, [p[2] / 1024 for p in pts], marker=markers[i % len(markers)], label=name)
        if sizes and len(sizes) > 1:  # slope-1 guide through the geometric middle of the time axis
            ys = [r["wall_s"] for r in rows if r["wall_s"] > 0]
            mid = math.exp(np.mean(np.log(ys))) if ys else 1.0
            xs = np.array([sizes[0], sizes[-1]], dtype=float)
            xm = math.exp(np.mean(np.log(xs)))
            ax_t.plot(xs, mid * xs / xm, color="0.6", ls="--", lw=1, label="slope 1 (linear)")
        ax_t.set(xscale="log", yscale="log", xlabel="crystals in the store, N", ylabel="wall time of the stage (s)",
                 title="Time per stage")
        ax_m.axhline(MAX_PEAK_MB_AT_LARGEST / 1024, color="firebrick", ls=":", lw=1, label="8 GB bar")
        ax_m.set(xscale="log", xlabel="crystals in the store, N", ylabel="peak RSS of its process (GB)",
                 title="Peak memory per stage")
        ax_m.set_ylim(0, max(MAX_PEAK_MB_AT_LARGEST / 1024 * 1.05,
                             max((r["peak_rss_mb"] for r in rows), default=0) / 1024 * 1.1))
        for ax in (ax_t, ax_m):
            ax.set_xticks(sizes, [f"{s // 1000}k" if s >= 1000 else str(s) for s in sizes])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.grid(True, which="major", alpha=0.3)
        handles, labels = ax_t.get_legend_handles_labels()
        stage_h = [(h, lab) for h, lab in zip(handles, labels) if not lab.startswith("slope 1")]
        fig.legend([h for h, _ in stage_h], [lab for _, lab in stage_h], loc="outside lower center",
                   ncols=min(3, len(stage_h)), title="stage (log-log slope of wall time vs N)")
        ax_t.legend([h for h, lab in zip(handles, labels) if lab.startswith("slope 1")],
                    [lab for lab in labels if lab.startswith("slope 1")], loc="lower right")
        h_m, l_m = ax_m.get_legend_handles_labels()
        ax_m.legend([h for h, lab in zip(h_m, l_m) if lab == "8 GB bar"], ["8 GB bar"], loc="upper left",
                    bbox_to_anchor=(0.0, 0.93))
        title = "Scale test: pipeline stages vs dataset size (synthetic store)"
        caption = ("Wall time (log-log) and peak RSS of each stage, each in its own process, on a synthetic "
                   "MP-20-like store; shared 2-core machine under load. Recorded with: "
                   + result.get("command", "(no command recorded)") + "; results/scale_test.json.")
        return save_figure(fig, path.parent, path.stem, title=title, caption=caption)


def write_outputs(result: dict[str, Any], json_path: Path, md_path: Path, png_path: Path | None) -> None:
    result["slopes_wall_s"] = fit_slopes([r for r in result["rows"] if "error" not in r])
    result["slopes_peak_rss_mb"] = fit_slopes([r for r in result["rows"] if "error" not in r], "peak_rss_mb")
    result["slopes_cpu_s"] = fit_slopes([r for r in result["rows"] if "error" not in r], "cpu_s")
    atomic_save_json(json_path, result)
    with atomic_write(md_path, "w") as f:
        f.write(render_markdown(result))
    if png_path is not None and any("error" not in r for r in result["rows"]):
        plot(result, png_path)


# =============================================================================================
def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="store sizes N")
    p.add_argument("--stages", nargs="+", default=None, help=f"subset of {list(STAGES)} (default: all, in order)")
    p.add_argument("--n-test", type=int, default=1000, help="test crystals regenerated and scored")
    p.add_argument("--steps", type=int, default=5, help="reverse sampling steps of the regeneration")
    p.add_argument("--train-batch", type=int, default=256, help="training batch (TrainConfig default)")
    p.add_argument("--regen-batch", type=int, default=128, help="regeneration chunk (the demo's batch_size)")
    p.add_argument("--type-target", default="posterior", help="diffusion type head (demo: posterior)")
    p.add_argument("--match-timeout", type=float, default=10.0, help="StructureMatcher timeout per pair (s)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads of every stage's process (torch and OpenMP/BLAS pools; 0: library default). "
                        "Default 1: on 2 cores shared with other jobs, 2 torch threads ran the sampler 3x slower")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage-timeout", type=float, default=3600.0, help="seconds before a stage's process is killed")
    p.add_argument("--workdir", default=None, help="work folder (default: a fresh temporary folder, removed)")
    p.add_argument("--keep-workdir", action="store_true")
    p.add_argument("--out-json", type=Path, default=DEFAULT_JSON)
    p.add_argument("--out-md", type=Path, default=DEFAULT_MD)
    p.add_argument("--out-fig", type=Path, default=DEFAULT_PNG)
    p.add_argument("--discussion", type=Path, default=None,
                   help="markdown file whose text is added to the report under 'Reading'")
    p.add_argument("--report-only", action="store_true", help="redraw the .md and .png from --out-json")
    p.add_argument("--redraw-from", metavar="JSON", type=Path, default=None,
                   help="only draw the figure again from this result JSON (e.g. results/scale_test.json) into "
                        "--out-fig (PNG and a PDF beside it); writes nothing else")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--child-settings", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    if args.redraw_from:
        try:
            paths = plot(json.loads(args.redraw_from.read_text(encoding="utf-8")), args.out_fig)
        except (OSError, ValueError) as exc:
            print(f"error: {args.redraw_from}: {exc}", file=sys.stderr)
            return 2
        print("wrote " + ", ".join(map(str, paths)))
        return 0
    if args.report_only:
        result = json.loads(args.out_json.read_text())
        if args.discussion:
            result["discussion"] = args.discussion.read_text()
        write_outputs(result, args.out_json, args.out_md, args.out_fig)
        print(render_markdown(result))
        return 0
    stages = args.stages or list(STAGES)
    unknown = [s for s in stages if s not in STAGES]
    if unknown or any(n < 10 for n in args.sizes):
        p.error(f"unknown stage(s) {unknown}" if unknown else "sizes must be >= 10")
    from dosmatgen.bench import environment

    settings = {"seed": args.seed, "threads": args.threads, "n_test": args.n_test, "steps": args.steps, "train_batch": args.train_batch,
                "regen_batch": args.regen_batch, "type_target": args.type_target, "match_timeout": args.match_timeout,
                "min_separation": MIN_SEPARATION, "volume_per_atom": VOLUME_PER_ATOM, "p_reuse": P_REUSE,
                "model_size": "tiny"}
    own_tmp = args.workdir is None
    root = Path(tempfile.mkdtemp(prefix="dosmatgen_scale_")) if own_tmp else Path(args.workdir)
    result: dict[str, Any] = {
        "format": "dosmatgen-scale-test", "version": 1,
        "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "experiments/scale_test/scale_test.py",
                                                      *(argv if argv is not None else sys.argv[1:])]),
        "note": ("Measured on a shared 2-core machine under load (a nice-19 GPAW labelling job and another "
                 "engineer's benchmarks ran at the same time): wall times include waiting for the CPU; cpu_s "
                 "is the stage's own CPU time. Synthetic data: timings and memory, not model quality."),
        "git_commit": _git_commit(), "settings": settings, "sizes": args.sizes, "stages": stages,
        "environment": environment(), "rows": []}
    if args.discussion:
        result["discussion"] = args.discussion.read_text()
    t_sweep = time.perf_counter()
    try:
        for n in args.sizes:
            ctx = StageContext(n, root / f"n{n}", settings)
            ctx.workdir.mkdir(parents=True, exist_ok=True)
            failed = False
            for name in stages:
                if failed:
                    result["rows"].append({"size": n, "stage": name, "error": "skipped: an earlier stage failed"})
                    continue
                row = run_stage_subprocess(name, ctx, args.stage_timeout)
                result["rows"].append(row)
                failed = "error" in row
                msg = row.get("error") or (f"{row['wall_s']:8.1f} s  cpu {row['cpu_s']:8.1f} s  "
                                           f"peak {row['peak_rss_mb']:7.0f} MB")
                print(f"N={n:>6}  {name:<15} {msg}", flush=True)
                result["environment"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
                result["sweep_wall_s"] = round(time.perf_counter() - t_sweep, 1)
                write_outputs(result, args.out_json, args.out_md, None)  # partial results survive a crash
            if not args.keep_workdir:
                shutil.rmtree(ctx.workdir, ignore_errors=True)
    finally:
        if own_tmp and not args.keep_workdir:
            shutil.rmtree(root, ignore_errors=True)
    result["sweep_wall_s"] = round(time.perf_counter() - t_sweep, 1)
    write_outputs(result, args.out_json, args.out_md, args.out_fig)
    print(render_markdown(result))
    return 0 if all("error" not in r for r in result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
