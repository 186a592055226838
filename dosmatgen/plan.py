"""What a run profile will cost before it starts: measured rates × the profile's sizes.

``dosmatgen plan --config config/paper.yaml`` prints, for every workflow target, the estimated
wall time on the machine at hand. Two parts:

- :func:`workload` turns a run config (``config/*.yaml``) and the dataset's size into *units of
  work* per workflow job, e.g. ``train_step:diffusion`` × 119,040 or ``relax_atom_step:ase`` ×
  2.5 M; it reads nothing but the config;
- :func:`measure_rates` times each unit here and now, with the profile's own model sizes, batch
  sizes and crystals, and reads GPAW's seconds per cell from the dataset ledgers.

The estimate is ``Σ units × seconds per unit`` per job, jobs one after another (the workflow's
``threads`` = ``cores``, as in the recorded runs). The one-at-a-time (ASE) relaxer runs in
``threads`` worker processes of one torch thread each (``--workers {threads}``), so its units are
measured with one thread and divided by ``threads``; everything else is measured with ``threads``
torch threads. Relaxations are counted at the full step cap for generated crystals (most do not
converge within it) and at :data:`TRUTH_STEP_FRACTION` of it for ground-truth crystals
(DFT-relaxed geometries converge early): both stated in the output.

Rates saved (``--save-rates``) on one machine (e.g. a lent GPU) plan another profile (``--rates``).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dosmatgen.data.split import DEFAULT_FRACTIONS, split_sizes
from dosmatgen.errors import ConfigError
from dosmatgen.evaluate.mlff import DEFAULT_RELAX_STEPS
from dosmatgen.evaluate.paper import N_DATASET

#: Fraction of the FIRE step cap a ground-truth (already DFT-relaxed) crystal runs, and a
#: generated one. Generated crystals mostly run to the cap (demo: 84 of 84 at 60 steps did not
#: converge); the truth's fraction is a rough figure from the demo's relaxations.
TRUTH_STEP_FRACTION = 0.5
GENERATED_STEP_FRACTION = 1.0
#: The paper's dataset size when the data are the Materials Project's (:mod:`dosmatgen.evaluate.paper`).
MP_STORE_SIZE = N_DATASET
MP_MEAN_ATOMS = 10.0


@dataclass
class Job:
    """One workflow job: its target, rule, a label and its units of work."""

    target: str
    rule: str
    label: str
    units: dict[str, float] = field(default_factory=dict)


@dataclass
class DataSize:
    """How many structures and atoms the run sees."""

    n_store: int
    mean_atoms: float
    split: tuple[float, float, float] = DEFAULT_FRACTIONS

    def _size(self, part: int) -> int:
        return split_sizes(self.n_store, self.split)[part]

    n_train = property(lambda self: self._size(0))
    n_val = property(lambda self: self._size(1))
    n_test = property(lambda self: self._size(2))


def _steps_for(steps: int | None, t0: int, timesteps: int = 1000) -> int:
    """Reverse steps of a start at ``t0`` (the generation service's one rule)."""
    from dosmatgen.generate.options import SamplerOptions

    s = SamplerOptions(steps=steps).steps_from(t0, timesteps)
    return t0 if s is None else s


def workload(cfg: dict[str, Any], data: DataSize) -> list[Job]:
    """The jobs of targets ``models``, ``tables``, ``studies`` and (when ``evaluate.dft_judge``
    asks for it) ``tables_dft`` with their units of work."""
    jobs: list[Job] = []
    train = cfg["train"]
    for kind in ("diffusion", "regressor", "surrogate"):
        t = train[kind]
        per_epoch = math.ceil(data.n_train / int(t["batch_size"]))
        steps = int(t["epochs"]) * per_epoch
        if t.get("max_steps"):
            steps = min(steps, int(t["max_steps"]))
        epochs = steps / per_epoch
        jobs.append(Job("models", "train", kind, {"job": 1, f"train_step:{kind}": steps,
                                                  f"val_crystal:{kind}": epochs * data.n_val}))
    gen, ev = cfg["generate"], cfg["evaluate"]
    n_gen = data.n_test if gen.get("limit") is None else min(int(gen["limit"]), data.n_test)
    chunks = math.ceil(n_gen / int(gen["batch_size"]))
    modes = list(gen["guidance"]) + (["uncond"] if "uncond" in ev.get("baselines", []) else [])
    for mode in modes:
        for t0 in gen["t0"]:
            steps = _steps_for(gen.get("steps"), int(t0))
            jobs.append(Job("tables", "regenerate", f"{mode} T={t0}",
                            {"job": 1, f"sample_chunk_step:{mode}": chunks * steps}))
            jobs.append(Job("tables", "score", f"{mode} T={t0}",
                            {"job": 1, "surrogate_crystal": n_gen, "match_pair": n_gen}))
    if "lookup" in ev.get("baselines", []):
        jobs.append(Job("tables", "lookup", "DOS lookup",
                        {"job": 1, "lookup_atom_pair": data.n_test * data.mean_atoms * data.n_train * data.mean_atoms}))
    relaxer = ev.get("relaxer", "ase")
    workers = int(cfg.get("threads", 1))
    steps = int(ev["relax_steps"])
    n_relax = n_gen if ev.get("relax_limit") is None else min(int(ev["relax_limit"]), n_gen)
    n_truth = data.n_test if ev.get("relax_limit") is None else min(int(ev["relax_limit"]), data.n_test)
    for mode in gen["guidance"]:
        for t0 in gen["t0"]:
            jobs.append(Job("tables", "formation", f"{mode} T={t0}", _relax_units(
                relaxer, n_relax, data.mean_atoms, steps * GENERATED_STEP_FRACTION, workers)))
    jobs.append(Job("tables", "formation", "ground truth", _relax_units(
        relaxer, n_truth, data.mean_atoms, steps * TRUTH_STEP_FRACTION, workers)))
    jobs.append(Job("tables", "tables", "tables + claims", {"job": 2}))
    jobs += _study_jobs(cfg, relaxer, workers)
    judge = ev.get("dft_judge") or {}
    for name in judge.get("sets", []) if judge.get("n") else []:  # GPAW jobs on `threads` cores
        jobs.append(Job("tables_dft", "dft_judge", name, {"job": 1, "gpaw_cell_parallel": int(judge["n"]) / workers}))
    return jobs


def _relax_units(relaxer: str, n: int, atoms: float, steps: float, workers: int = 1) -> dict[str, float]:
    """Units of relaxing ``n`` crystals of ``atoms`` atoms for ``steps`` FIRE steps; the ASE
    relaxer shares them among ``workers`` processes (wall time = units / workers)."""
    share = 1.0 / max(1, workers) if relaxer == "ase" else 1.0
    units = {"job": 1, f"relax_crystal:{relaxer}": n * share, f"relax_crystal_step:{relaxer}": n * steps * share,
             f"relax_atom_step:{relaxer}": n * atoms * steps * share}
    if relaxer == "ase" and workers > 1:
        units["relax_pool:ase"] = 1  # starting the worker processes, each loading the MLFF
    return units


def _study_jobs(cfg: dict[str, Any], relaxer: str, workers: int = 1) -> list[Job]:
    st, steps = cfg.get("studies", {}), cfg["generate"].get("steps")
    full = _steps_for(steps, 1000)
    chunk = int(cfg["generate"]["batch_size"])  # the workflow's study rule passes the generate section's batch
    jobs = []

    def sample(n: int, n_steps: int) -> float:
        return math.ceil(n / chunk) * n_steps

    def relax(n: int, atoms: float, s: dict[str, Any]) -> dict[str, float]:
        steps = int(s.get("relax_steps", DEFAULT_RELAX_STEPS)) * GENERATED_STEP_FRACTION
        return {k: v for k, v in _relax_units(relaxer, n, atoms, steps, workers).items() if k != "job"}

    for name in st.get("run", []):
        s = st.get(name, {})
        units: dict[str, float] = {"job": 2}  # the study and its table
        if name == "masked":
            units["sample_chunk_step:cfg"] = sum(sample(int(s["n"]), full) for _ in s["natoms"])
            units["surrogate_crystal"] = int(s["n"]) * len(s["natoms"])
        elif name == "template":
            units["sample_chunk_step:cfg"] = sum(sample(int(s["n"]), _steps_for(steps, int(t))) for t in s["t0"])
            units["surrogate_crystal"] = units["match_pair"] = int(s["n"]) * len(s["t0"])
        elif name == "fixed-type":  # n crystals per element, their atom counts cycling through natoms
            k = len(s["elements"])
            units["sample_chunk_step:cfg"] = k * sample(int(s["n"]), full)
            units["surrogate_crystal"] = int(s["n"]) * k
        elif name == "screen":
            n = int(s["n_per_natoms"]) * len(s["natoms"])
            atoms = float(np.mean(s["natoms"]))
            units["sample_chunk_step:cfg"] = len(s["natoms"]) * sample(int(s["n_per_natoms"]), full)
            units["surrogate_crystal"] = n
            units.update(relax(n, atoms, s))
            if s.get("dft"):
                units["gpaw_cell_parallel"] = int(s.get("top_k", 8)) / max(1, int(s.get("dft_workers", 1)))
        elif name == "window-sweep":
            n = int(s["n"]) * len(s["windows"]) * len(s["omegas"])
            atoms = float(np.mean(s["natoms"]))
            units["sample_chunk_step:cfg"] = len(s["windows"]) * len(s["omegas"]) * sample(int(s["n"]), full)
            units["surrogate_crystal"] = n
            if not s.get("no_formation"):
                units.update(relax(n, atoms, s))
        jobs.append(Job("studies", f"study_{name}", name, units))
    return jobs


@dataclass
class Rates:
    """Seconds per unit of work, with how each was measured; ``lower_bounds`` names the units
    measured on a cheaper proxy (e.g. GPAW on the dataset's symmetric cells standing in for
    generated ones), whose estimates are therefore lower bounds."""

    seconds: dict[str, float] = field(default_factory=dict)
    how: dict[str, str] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    lower_bounds: set[str] = field(default_factory=set)

    def set(self, unit: str, value: float, how: str, lower_bound: bool = False) -> None:
        self.seconds[unit] = float(value)
        self.how[unit] = how
        if lower_bound:
            self.lower_bounds.add(unit)
        else:
            self.lower_bounds.discard(unit)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "dosmatgen-rates", "version": 1, "seconds": self.seconds, "how": self.how,
                "environment": self.environment, "lower_bounds": sorted(self.lower_bounds)}

    @classmethod
    def load(cls, path: str | Path) -> "Rates":
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read rates file {path}: {exc}") from exc
        if d.get("format") != "dosmatgen-rates":
            raise ConfigError(f"{path} is not a rates file written by `dosmatgen plan --save-rates`")
        bad = [k for k, v in d["seconds"].items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)]
        if bad:
            raise ConfigError(f"{path}: rates must be finite and >= 0: {bad}")
        return cls(dict(d["seconds"]), dict(d.get("how", {})), dict(d.get("environment", {})),
                   set(d.get("lower_bounds", [])))


def rates_from_bench(path: str | Path, size: str, train_batch: int) -> Rates:
    """Partial rates from a ``dosmatgen bench --json`` file (e.g. one recorded on a lent GPU):
    whatever it holds for model ``size`` (training, sampling with and without CFG, surrogate,
    StructureMatcher); other units stay unmeasured (reported, counted as 0)."""
    try:
        d = json.loads(Path(path).read_text())
        rows, settings = d["results"], d.get("settings", {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a `dosmatgen bench --json` file: {exc}") from exc
    rates = Rates(environment={"from_bench": str(path), **d.get("environment", {})})
    by = {(r.get("benchmark"), r.get("size"), r.get("metric")): r for r in rows}
    src = f"{path}, size {size}"
    r = by.get(("train", size, "train_crystals_per_s"))
    if r and r["value"] > 0:
        rates.set("train_step:diffusion", train_batch / r["value"],
                  f"{src}: {r['value']:.0f} crystals/s at batch {r.get('batch')}, x batch {train_batch}")
    chunk = settings.get("sample_batch")
    for metric, unit in (("s_per_step_cfg", "sample_chunk_step:cfg"), ("s_per_step_no_cfg", "sample_chunk_step:uncond")):
        r = by.get(("sample", size, metric))
        if r:
            rates.set(unit, r["value"], f"{src}: {metric} at a {r.get('batch', chunk)}-crystal chunk")
    r = by.get(("surrogate", size, "surrogate_structures_per_s"))
    if r and r["value"] > 0:
        rates.set("surrogate_crystal", 1.0 / r["value"], f"{src}: surrogate_structures_per_s")
    m = [by.get(("match", "-", f"s_per_pair_{k}")) for k in ("match", "non_match")]
    if all(m):
        rates.set("match_pair", 0.5 * (m[0]["value"] + m[1]["value"]), f"{src}: StructureMatcher pairs")
    return rates


#: Units whose cost depends on the diffusion / regressor / surrogate model size.
MODEL_SIZE_UNITS = ("train_step:", "val_crystal:", "sample_chunk_step:", "surrogate_crystal")


def combine(model_rates: Rates, other: Rates) -> Rates:
    """``model_rates`` (e.g. a bench at the profile's model size) for every model-size unit
    (:data:`MODEL_SIZE_UNITS`), ``other`` for the rest (start-up, matching, lookup, relaxation,
    GPAW): rates measured with another model size are not mixed in."""
    out = Rates(environment={"model_units_from": model_rates.environment, "other_units_from": other.environment})
    for unit, v in other.seconds.items():
        if not unit.startswith(MODEL_SIZE_UNITS):
            out.set(unit, v, other.how.get(unit, ""))
    for unit, v in model_rates.seconds.items():
        if unit.startswith(MODEL_SIZE_UNITS):
            out.set(unit, v, model_rates.how.get(unit, ""))
    return out


def _timed(fn: Callable[[], Any], repeat: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def _best_of(fn: Callable[[], Any], n: int = 2) -> float:
    """The fastest of ``n`` timed runs: other work on the machine only ever slows a run down."""
    return min(_timed(fn) for _ in range(n))


def measure_startup() -> float:
    """Seconds for a fresh interpreter to import the CLI and what a job imports first."""
    code = "import dosmatgen.cli, torch, pymatgen.core, ase"
    return _timed(lambda: subprocess.run([sys.executable, "-c", code], check=True), repeat=2)


def measure_training(kind: str, model_config: dict[str, Any], records: Sequence[Any], batch_size: int,
                     device: str) -> tuple[float, float]:
    """``(s per optimiser step, s per validation crystal)`` of the real trainer (checkpoints and
    validation included): three epochs of three steps, a validation set of ``batch_size``
    crystals; the first epoch (TorchScript profiling runs, allocator warm-up) is not counted."""
    from dosmatgen.data.standardise import DOSStandardiser
    from dosmatgen.training import TrainConfig, train

    n_train = 3 * batch_size
    pool = [records[i % len(records)] for i in range(n_train + batch_size)]
    tr, va = pool[:n_train], pool[n_train:]
    stamps: list[tuple[float, int]] = []

    def on_step(ev: dict[str, Any]) -> None:
        stamps.append((time.perf_counter(), int(ev.get("epoch", 0))))

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(epochs=10 ** 6, batch_size=batch_size, max_steps=9, device=device, progress=False,
                          checkpoint_every=10 ** 6, seed=0)
        train(kind, model_config, tr, va, DOSStandardiser.fit([r.dos for r in tr]), cfg, tmp, resume="never",
              callback=on_step)
    first = stamps[0][1]
    same, cross = [], []
    for (t0, e0), (t1, e1) in zip(stamps[:-1], stamps[1:]):
        if e0 != first:
            (same if e0 == e1 else cross).append(t1 - t0)
    step_s = float(np.median(same))
    val_s = max(0.0, float(np.median(cross)) - step_s) / len(va) if cross else 0.0
    return step_s, val_s


def _model_configs(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from dosmatgen.model.factory import model_config_for_size

    size = cfg["model"]["size"]
    out = {k: model_config_for_size(k, size) for k in ("diffusion", "regressor", "surrogate")}
    tt = cfg["model"].get("type_target")
    if tt:
        out["diffusion"] = {**out["diffusion"], "diffusion": {**(out["diffusion"].get("diffusion") or {}),
                                                              "type_target": tt}}
    return out


def measure_part(what: str, fn: Callable[[], None], report: Callable[[str], None],
                 failures: list[str]) -> bool:
    """Run one part of :func:`measure_rates`; ``False`` when it stays unmeasured: its packages are
    missing here (e.g. pymatgen on a bare GPU machine), or it raised (a kernel the device lacks,
    say: reported and added to ``failures``, so that the parts already measured are still saved).

    >>> log = []
    >>> measure_part("relax", lambda: 1 / 0, log.append, failed := [])
    False
    >>> failed, log
    (['relax: ZeroDivisionError: division by zero'], ['  relax: FAILED, not measured (ZeroDivisionError: division by zero)'])
    """
    try:
        fn()
        return True
    except (ImportError, ConfigError, subprocess.CalledProcessError) as exc:
        report(f"  {what}: not measured ({type(exc).__name__}: {exc})")
    except Exception as exc:  # noqa: BLE001 - one failing part must not lose the others
        failures.append(f"{what}: {type(exc).__name__}: {exc}")
        report(f"  {what}: FAILED, not measured ({type(exc).__name__}: {exc})")
    return False


def measure_rates(cfg: dict[str, Any], records: Sequence[Any], device: str = "cpu", *,
                  ledgers: Sequence[str | Path] = (), screen_dft: Sequence[str | Path] = (),
                  report: Callable[[str], None] = print) -> Rates:
    """Time every unit of :func:`workload` with the profile's models and batch sizes on ``records``;
    GPAW from ``screen_dft`` or ``ledgers`` (:func:`gpaw_seconds_per_cell`)."""
    import torch

    rates = Rates(environment={"nproc": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device,
                               "loadavg_before": os.getloadavg(), "model_size": cfg["model"]["size"],
                               "mean_atoms_of_measured_crystals": float(np.mean([r.num_atoms for r in records]))})
    def attempt(what: str, fn: Callable[[], None]) -> None:
        measure_part(what, fn, report, rates.environment.setdefault("failed_parts", []))

    def startup() -> None:
        rates.set("job", measure_startup(), "fresh interpreter importing the CLI, torch, pymatgen, ase (2 runs)")
        report(f"  job start-up {rates.seconds['job']:.1f} s")

    attempt("job start-up", startup)
    configs = _model_configs(cfg)
    for kind in ("diffusion", "regressor", "surrogate"):
        def training(kind: str = kind) -> None:
            b = int(cfg["train"][kind]["batch_size"])
            step_s, val_s = measure_training(kind, configs[kind], records, b, device)
            rates.set(f"train_step:{kind}", step_s, f"median of the trainer's steps 4-9, batch {b}")
            rates.set(f"val_crystal:{kind}", val_s, "epoch-boundary gap minus a step, per validation crystal")
            report(f"  train {kind}: {step_s:.3f} s/step, {val_s * 1e3:.2f} ms per validation crystal")

        attempt(f"train {kind}", training)
    torch.manual_seed(0)
    _measure_sampling_and_scoring(rates, cfg, configs, records, device, attempt, report)
    mlff, workers = cfg["evaluate"].get("mlff", "sevenn"), int(cfg.get("threads", 1))
    for relaxer in ("ase", "batched"):
        def relaxing(relaxer: str = relaxer) -> None:
            threads = torch.get_num_threads()
            if relaxer == "ase":  # each ASE worker process runs one torch thread
                torch.set_num_threads(1)
            try:
                where = device if relaxer == "batched" else "cpu"
                n_probe = relax_probe_crystals(where)
                per_crystal, per_crystal_step, per_atom_step = measure_relax(relaxer, records, mlff, where, n_probe)
            finally:
                torch.set_num_threads(threads)
            how = (f"fit of 1, 5 and 15 FIRE steps on {n_probe} crystals and their doubled supercells, "
                   f"{1 if relaxer == 'ase' else threads} torch thread(s)")
            if relaxer == "ase" and workers > 1:
                rates.set("relax_pool:ase", measure_relax_pool(mlff, workers),
                          f"starting {workers} spawned worker processes that load the MLFF")
                report(f"  relax ase: {rates.seconds['relax_pool:ase']:.1f} s to start {workers} worker processes")
            rates.set(f"relax_crystal:{relaxer}", per_crystal, f"per-crystal overhead ({how})")
            rates.set(f"relax_crystal_step:{relaxer}", per_crystal_step, f"FIRE step per crystal ({how})")
            rates.set(f"relax_atom_step:{relaxer}", per_atom_step, f"FIRE step per atom ({how})")
            report(f"  relax {relaxer}: {per_crystal_step * 1e3:.1f} ms per crystal-step + {per_atom_step * 1e3:.2f} ms "
                   f"per atom-step + {per_crystal:.2f} s per crystal")

        attempt(f"relax {relaxer}", relaxing)
    gpaw = gpaw_seconds_per_cell(ledgers, screen_dft)
    if gpaw is not None:
        rates.set("gpaw_cell_parallel", *gpaw)
    rates.environment["loadavg_after"] = os.getloadavg()
    return rates


def _measure_sampling_and_scoring(rates: Rates, cfg: dict[str, Any], configs: dict[str, dict[str, Any]],
                                  records: Sequence[Any], device: str, attempt: Callable[[str, Callable[[], None]], None],
                                  report: Callable[[str], None]) -> None:
    """The parts of :func:`measure_rates` after training: sampling and the surrogate with untrained
    networks of the profile's ``configs``, StructureMatcher pairs and the DOS lookup."""
    from dosmatgen.bench_eval import bench_regeneration, bench_structure_matcher, bench_surrogate
    from dosmatgen.data.standardise import DOSStandardiser
    from dosmatgen.model.factory import build_model

    chunk = int(cfg["generate"]["batch_size"])
    recs = [records[i % len(records)] for i in range(chunk)]
    std = DOSStandardiser.fit([r.dos for r in recs])

    def sampling() -> None:
        diffusion = build_model("diffusion", configs["diffusion"]).to(device).eval()
        regressor = build_model("regressor", configs["regressor"]).to(device).eval()
        for mode in ("cfg", "classifier", "uncond"):
            r = bench_regeneration(diffusion, recs, std, guidance=mode, regressor=regressor, steps=3, batch_size=chunk)
            rates.set(f"sample_chunk_step:{mode}", r["s_per_step_per_chunk"], f"regenerate(), {chunk} crystals, 3 steps")
            report(f"  sample {mode}: {r['s_per_step_per_chunk']:.3f} s per step of a {chunk}-crystal chunk")

    def surrogate() -> None:
        model = build_model("surrogate", configs["surrogate"]).to(device).eval()
        s = bench_surrogate(model, recs, std, batch_size=min(chunk, 128), device=device)
        rates.set("surrogate_crystal", s["wall_s"] / s["structures"], f"predict_site_dos on {len(recs)} crystals")
        report(f"  surrogate {rates.seconds['surrogate_crystal'] * 1e3:.1f} ms/crystal")

    def matching() -> None:
        m = bench_structure_matcher([rc.to_structure() for rc in recs[:20]], n_pairs=12)
        rates.set("match_pair", 0.5 * (m["s_per_pair_match"] + m["s_per_pair_non_match"]),
                  "StructureMatcher, mean of matching and non-matching pairs (12 each)")
        report(f"  StructureMatcher {rates.seconds['match_pair'] * 1e3:.1f} ms/pair")

    def lookup() -> None:
        rates.set("lookup_atom_pair", _measure_lookup(records, device), "score_lookup, per test atom x training atom")

    for what, fn in (("sampling", sampling), ("surrogate", surrogate), ("StructureMatcher", matching),
                     ("DOS lookup", lookup)):
        attempt(what, fn)


def _measure_lookup(records: Sequence[Any], device: str) -> float:
    from dosmatgen.data.standardise import DOSStandardiser
    from dosmatgen.evaluate.lookup import score_lookup

    n = min(len(records), 200)
    test, train = records[:n // 4], records[n // 4:n]
    std = DOSStandardiser.fit([r.dos for r in train])
    t = _timed(lambda: score_lookup(test, train, std, device=device))
    atoms = sum(r.num_atoms for r in test) * sum(r.num_atoms for r in train)
    return t / atoms


def relax_probe_crystals(device: str) -> int:
    """Crystals per batch that :func:`measure_relax` times: 6 on a CPU, where a FIRE step costs in
    proportion to the atoms it moves; 64 on a GPU, where a step of a few crystals is mostly kernel
    launches. Not more: torch-sim 0.3.0's cell filter costs 7.2 ms per crystal-step on an H200
    (results/plan/h200/), so 1,024 crystals would make the measurement about 10 minutes long."""
    return 6 if str(device).startswith("cpu") else 64


def measure_relax(relaxer: str, records: Sequence[Any], mlff: str, device: str = "cpu",
                  n_crystals: int | None = None) -> tuple[float, float, float]:
    """``(s per crystal, s per crystal per FIRE step, s per atom per FIRE step)``: ``n_crystals``
    crystals (None: :func:`relax_probe_crystals` of ``device``; ``records`` repeated if fewer) and
    their doubled supercells relaxed for 5 and 15 steps with an unreachable force threshold (every
    step runs), each timing the best of two; small cells cost per step about the same whatever
    their size (call overhead), so a step is fitted as ``a + b * atoms``."""
    if n_crystals is None:
        n_crystals = relax_probe_crystals(device)
    small = []
    for k in range(n_crystals):
        a = records[k % len(records)].to_atoms()
        a.rattle(0.05, seed=k)
        small.append(a)
    big = [a.repeat((2, 1, 1)) for a in small]
    if relaxer == "batched":
        from dosmatgen.evaluate.batched_relax import BatchedRelaxer, load_batched_model

        model = load_batched_model(mlff, device)

        def run(atoms: list, steps: int) -> float:
            return _best_of(lambda: BatchedRelaxer(model=model, steps=steps, fmax=1e-9,
                                                   max_volume_ratio=1e9).relax(atoms))
    else:
        from dosmatgen.evaluate.mlff import get_calculator, relax

        calc = get_calculator(mlff, device=device)

        def run(atoms: list, steps: int) -> float:
            return _best_of(lambda: [relax(a, calc, 1e-9, steps, max_volume_ratio=1e9) for a in atoms])
    run(small, 2)  # warm-up
    n, n_atoms = len(small), sum(len(a) for a in small)
    step_small = max(run(small, 15) - run(small, 5), 1e-9) / 10  # = n * a + n_atoms * b
    step_big = max(run(big, 15) - run(big, 5), 1e-9) / 10        # = n * a + 2 * n_atoms * b
    per_atom_step = max(step_big - step_small, 0.0) / n_atoms
    per_crystal_step = max(step_small - n_atoms * per_atom_step, 0.0) / n
    per_crystal = max(run(small, 1) - step_small, 0.0) / n
    return per_crystal, per_crystal_step, per_atom_step


def measure_relax_pool(mlff: str, workers: int) -> float:
    """Seconds until a pool of ``workers`` spawned processes, each with its MLFF calculator,
    is ready: what :func:`dosmatgen.evaluate.formation.compute_formation_energies` pays before its
    first one-at-a-time relaxation."""
    from dosmatgen.evaluate.formation import worker_pool

    t0 = time.perf_counter()
    pool = worker_pool(mlff, "cpu", workers)
    try:
        pool.map(abs, range(workers))  # one trivial task per worker
        return time.perf_counter() - t0
    finally:
        pool.close()
        pool.join()


def gpaw_seconds_per_cell(ledgers: Sequence[str | Path],
                          screen_dft: Sequence[str | Path] = ()) -> tuple[float, str, bool] | None:
    """Mean GPAW seconds per cell, where it comes from, and whether it is a lower bound: the
    DFT records of generated crystals of an earlier run of the profile (``screen_dft``: the
    screen's 4-8-atom crystals, the DFT judge's labels) when there are any, else the dataset build ledgers (prototype and MP-20 cells of 1-8
    atoms); ``None`` without either.  The ledgers' mean is a lower bound for generated cells: they
    have little symmetry, so more k-points and SCF steps (two demo screens of the same 8 cells took
    380 s and 367 s per cell against the ledgers' 57 s)."""
    done = []
    for path in screen_dft:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        if d.get("status") == "ok" and d.get("seconds"):
            done.append(float(d["seconds"]))
    if done:
        return (statistics.fmean(done),
                f"mean GPAW seconds of {len(done)} generated cells of an earlier screen or DFT judge of this profile",
                False)
    secs = []
    for path in ledgers:
        for line in Path(path).read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("status") == "done" and row.get("seconds_dft"):
                secs.append(float(row["seconds_dft"]))
    if not secs:
        return None
    return statistics.fmean(secs), (f"mean GPAW seconds per cell in {len(ledgers)} dataset ledger(s), a lower "
                                    "bound: generated screen cells have little symmetry and took 6-7x longer "
                                    "in the demo"), True


def estimate(jobs: Sequence[Job], rates: Rates) -> tuple[list[dict[str, Any]], list[str]]:
    """Seconds per job (rows; with units in ``missing``, no rate, or ``lower_bound``, a lower-bound
    rate, the job's seconds are a lower bound) and all units no rate was measured for."""
    rows, missing = [], set()
    for j in jobs:
        s, lacking = 0.0, []
        for unit, n in j.units.items():
            if unit not in rates.seconds:
                lacking.append(unit)
                continue
            s += n * rates.seconds[unit]
        missing.update(lacking)
        rows.append({"target": j.target, "rule": j.rule, "label": j.label, "seconds": s, "units": j.units,
                     "missing": lacking, "lower_bound": sorted(u for u in j.units if u in rates.lower_bounds)})
    return rows, sorted(missing)


def per_target(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in rows:
        out[r["target"]] = out.get(r["target"], 0.0) + r["seconds"]
    return out


def human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
