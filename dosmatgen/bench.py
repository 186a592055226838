"""Speed and memory benchmarks (``dosmatgen bench``).

Core benchmarks, per model size (tiny / compact / paper):

- ``train``: training throughput of the joint diffusion model (eq. A11 loss, Adam step, gradient
  clipping) on a batch of MP-20-like crystals, in crystals per second;
- ``sample``: seconds per predictor-corrector sampling step for a batch of crystals, without
  classifier-free guidance (omega = 0: one network pass per evaluation) and with it (omega = 1:
  conditional and unconditional passes batched together), and their ratio.

Times are wall-clock; ``cpu_s`` (process CPU time over the same interval) is reported beside them
because on a shared machine wall time also measures the other jobs: on an idle machine
``wall_s`` approaches ``cpu_s / threads``.

Each benchmark reports the peak memory it needed (:class:`~dosmatgen.device.PeakMemory`).

Extension hook: other modules add benchmarks with :func:`register_benchmark`; the modules named
in :data:`EXTENSION_MODULES` are imported when present (e.g. the evaluation package's
regeneration throughput and StructureMatcher time per pair)::

    from dosmatgen.bench import BenchContext, register_benchmark

    @register_benchmark("match", quick=True)
    def bench_match(ctx: BenchContext) -> list[dict]:
        ...  # return rows {"benchmark", "size", "metric", "value", "unit", ...}
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from dosmatgen.device import PeakMemory, synchronize
from dosmatgen.errors import ConfigError, DataError

#: Modules imported (when they exist) so that they can register more benchmarks.
EXTENSION_MODULES: tuple[str, ...] = ("dosmatgen.bench_eval",)
SIZES = ("tiny", "compact", "paper")
#: Atom counts of the synthetic MP-20-like crystals and their weights (MP-20: 1-20 atoms per
#: cell, mostly even counts, mean about 10).
_MP20_COUNTS = np.arange(1, 21)
_MP20_WEIGHTS = np.array([2, 6, 4, 10, 5, 9, 3, 10, 3, 9, 2, 10, 2, 7, 2, 7, 1, 5, 1, 5], dtype=float)


@dataclass
class BenchContext:
    """What every benchmark function receives."""

    sizes: list[str]
    device: torch.device
    batch: int = 256  # training batch
    sample_batch: int = 256
    steps: int = 3  # timed sampling steps
    train_steps: int = 3  # timed training steps
    seed: int = 0
    quick: bool = False
    progress: bool = False
    sigma_norm_samples: int = 2000  # Monte-Carlo samples for the lambda_t table (no effect on speed)
    type_target: str = "eps"  # the diffusion model's type head (DiffusionConfig.type_target)
    crystals: list = field(default_factory=list)  # CrystalRecord pool (MP-20-like)
    cache: dict[str, Any] = field(default_factory=dict)  # shared between benchmarks (models ...)

    def crystal_batch(self, n: int, offset: int = 0) -> list:
        """``n`` records cycled from the pool."""
        pool = self.crystals
        return [pool[(offset + i) % len(pool)] for i in range(n)]


BenchFn = Callable[[BenchContext], list[dict[str, Any]]]


@dataclass
class Benchmark:
    name: str
    fn: BenchFn
    quick: bool = True  # runs under --quick too
    doc: str = ""


BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(name: str, quick: bool = True) -> Callable[[BenchFn], BenchFn]:
    """Decorator adding ``fn(ctx) -> rows`` to :data:`BENCHMARKS` under ``name``."""

    def deco(fn: BenchFn) -> BenchFn:
        BENCHMARKS[name] = Benchmark(name, fn, quick, (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


def load_extensions() -> list[str]:
    """Import :data:`EXTENSION_MODULES` that exist; returns the names imported."""
    done = []
    for mod in EXTENSION_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name == mod:
                continue
            raise
        done.append(mod)
    return done


def mp20_like_crystals(n: int, seed: int = 0) -> list:
    """``n`` random crystals with MP-20-like atom counts (mean about 10), random elements
    (Z 1-83), about 18 Å^3 per atom, and a random site DOS (speed does not depend on values)."""
    from dosmatgen.data.schema import CrystalRecord

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.choice(_MP20_COUNTS, p=_MP20_WEIGHTS / _MP20_WEIGHTS.sum()))
        a = (18.0 * k) ** (1 / 3)
        lat = np.diag(a * rng.uniform(0.85, 1.15, 3)) + rng.normal(0, 0.1 * a, (3, 3)) * (1 - np.eye(3))
        out.append(CrystalRecord(f"bench-{i}", rng.integers(1, 84, k), rng.random((k, 3)), lat,
                                 np.abs(rng.normal(0.3, 0.3, (k, 400))).astype(np.float32)))
    return out


def crystals_from_json(path: str | Path) -> list:
    """Crystals from a JSON ``{"structures": [{id, abc, angles, species, frac}, ...]}`` (the
    format of the MP-20 benchmark sample); a random DOS is attached."""
    from pymatgen.core import Lattice
    from pymatgen.core.periodic_table import Element

    from dosmatgen.data.schema import CrystalRecord

    path = Path(path)
    try:
        obj = json.loads(path.read_text())
        items = obj["structures"] if isinstance(obj, dict) else obj
        rng = np.random.default_rng(0)
        out = []
        for s in items:
            lat = Lattice.from_parameters(*s["abc"], *s["angles"]).matrix
            zs = [Element(sp).Z for sp in s["species"]]
            out.append(CrystalRecord(str(s.get("id", len(out))), zs, s["frac"], lat,
                                     np.abs(rng.normal(0.3, 0.3, (len(zs), 400))).astype(np.float32)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read benchmark crystals from {path}: {exc}") from exc
    if not out:
        raise DataError(f"{path} holds no crystals")
    return out


def diffusion_for_size(ctx: BenchContext, size: str):
    """The joint diffusion model at ``size`` (cached in ``ctx``)."""
    key = f"diffusion:{size}"
    if key not in ctx.cache:
        from dosmatgen.model.factory import build_model, model_config_for_size

        config = model_config_for_size("diffusion", size)
        # the Monte-Carlo estimate of lambda_t (A9) only fills a lookup table: its sample count
        # changes nothing in the timed work, so the bench uses fewer samples to build faster
        config["diffusion"] = {**config.get("diffusion", {}), "sigma_norm_samples": ctx.sigma_norm_samples,
                               "type_target": ctx.type_target}
        torch.manual_seed(ctx.seed)
        ctx.cache[key] = build_model("diffusion", config).to(ctx.device)
    return ctx.cache[key]


def _row(bench: str, size: str, metric: str, value: float, unit: str, **extra: Any) -> dict[str, Any]:
    return {"benchmark": bench, "size": size, "metric": metric, "value": value, "unit": unit, **extra}


def _timing(dt: float, cpu: float, mem: PeakMemory, **more: Any) -> dict[str, Any]:
    """The wall and CPU seconds, torch threads (then ``more``) and peak memory of a timed row."""
    return {"wall_s": round(dt, 3), "cpu_s": round(cpu, 3), "threads": torch.get_num_threads(), **more,
            "peak_mem_mib": round(mem.peak_mib, 1), "mem_before_mib": round(mem.before_mib, 1),
            "mem_method": mem.method}


@register_benchmark("train")
def bench_train(ctx: BenchContext) -> list[dict[str, Any]]:
    """Training throughput (crystals/s) of the joint diffusion model, Adam + clip, one batch."""
    from dosmatgen.model.batch import CrystalBatch

    rows = []
    for size in ctx.sizes:
        model = diffusion_for_size(ctx, size)
        model.train()
        params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)  # as the trainer
        batches = [CrystalBatch.from_records(ctx.crystal_batch(ctx.batch, offset=i * ctx.batch)).to(ctx.device)
                   for i in range(2)]
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)

        def step(b) -> None:
            out = model.loss(b, generator=gen)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), 0.5, foreach=True)
            opt.step()

        with PeakMemory(ctx.device) as mem:
            for i in range(2):  # warm-up: TorchScript profiling runs, allocations, lazy init
                step(batches[i])
            synchronize(ctx.device)
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(ctx.train_steps):
                step(batches[i % 2])
            synchronize(ctx.device)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        atoms = float(np.mean([b.num_nodes / b.num_graphs for b in batches]))
        rows.append(_row("train", size, "train_crystals_per_s", ctx.batch * ctx.train_steps / dt, "crystals/s",
                         type_target=ctx.type_target, batch=ctx.batch, timed_steps=ctx.train_steps,
                         mean_atoms=round(atoms, 2), **_timing(dt, cpu, mem, parameters=params)))
        del opt
    return rows


@register_benchmark("sample")
def bench_sample(ctx: BenchContext) -> list[dict[str, Any]]:
    """Seconds per predictor-corrector step, without and with classifier-free guidance."""
    from dosmatgen.data.standardise import DOSStandardiser
    from dosmatgen.generate.options import SamplerOptions
    from dosmatgen.generate.runner import generate
    from dosmatgen.model.batch import CrystalBatch

    rows = []
    recs = ctx.crystal_batch(ctx.sample_batch)
    std = DOSStandardiser.fit([r.dos for r in recs])
    spec = CrystalBatch.for_generation([r.num_atoms for r in recs], dos=[r.dos for r in recs],
                                       standardiser=std).to(ctx.device)
    for size in ctx.sizes:
        model = diffusion_for_size(ctx, size)
        model.eval()
        per_step = {}
        variants = (("no_cfg", 0.0), ("cfg", 1.0))
        one_call = SamplerOptions(batch_size=spec.num_graphs, seed=ctx.seed)
        for _, omega in variants:  # warm-up: TorchScript profiling runs, allocator, lazy init
            generate(model, spec, one_call.replace(omega=omega, steps=2), progress=False)
        for label, omega in variants:
            with PeakMemory(ctx.device) as mem:
                synchronize(ctx.device)
                t0, c0 = time.perf_counter(), time.process_time()
                generate(model, spec, one_call.replace(omega=omega, steps=ctx.steps), progress=False)
                synchronize(ctx.device)
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            per_step[label] = dt / ctx.steps
            rows.append(_row("sample", size, f"s_per_step_{label}", per_step[label], "s/step",
                             batch=ctx.sample_batch, timed_steps=ctx.steps, omega=omega, type_target=ctx.type_target,
                             **_timing(dt, cpu, mem)))
        rows.append(_row("sample", size, "cfg_over_no_cfg", per_step["cfg"] / per_step["no_cfg"], "ratio",
                         batch=ctx.sample_batch, target="<= 1.3"))
    return rows


def environment() -> dict[str, Any]:
    """Where the numbers were measured: CPU count, load, threads, device, versions."""
    import platform

    import dosmatgen

    env: dict[str, Any] = {"nproc": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                           "torch": str(torch.__version__), "dosmatgen": dosmatgen.__version__,
                           "python": platform.python_version(), "machine": platform.machine()}
    try:
        env["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        env["cpu"] = model.group(1).strip() if model else platform.processor()
    except OSError:
        env["cpu"] = platform.processor()
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def run_benchmarks(names: Sequence[str] | None, ctx: BenchContext,
                   report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the named benchmarks (default: all, or all quick ones with ``ctx.quick``); returns
    ``{"environment": ..., "settings": ..., "results": [rows]}``."""
    load_extensions()
    if names is None:
        names = [n for n, b in BENCHMARKS.items() if b.quick or not ctx.quick]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ConfigError(f"unknown benchmark(s) {unknown}; known: {sorted(BENCHMARKS)}")
    bad = [s for s in ctx.sizes if s not in SIZES]
    if bad or not ctx.sizes:
        raise ConfigError(f"unknown size(s) {bad or ctx.sizes}; known: {list(SIZES)}")
    env = environment()
    results: list[dict[str, Any]] = []
    for name in names:
        t0 = time.perf_counter()
        rows = BENCHMARKS[name].fn(ctx)
        for r in rows:
            r.setdefault("benchmark", name)
            if report:
                report(format_row(r))
        results.extend(rows)
        if report:
            report(f"  ({name}: {time.perf_counter() - t0:.1f} s)")
    env["loadavg_after"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    settings = {"sizes": ctx.sizes, "batch": ctx.batch, "sample_batch": ctx.sample_batch, "steps": ctx.steps,
                "train_steps": ctx.train_steps, "device": str(ctx.device), "seed": ctx.seed,
                "crystals": len(ctx.crystals),
                "mean_atoms": round(float(np.mean([c.num_atoms for c in ctx.crystals])), 2) if ctx.crystals else None}
    return {"environment": env, "settings": settings, "results": results}


def format_row(r: dict[str, Any]) -> str:
    v = r.get("value")
    if isinstance(v, float):
        v = f"{v:.4g}" if math.isfinite(v) else str(v)
    extra = ", ".join(f"{k}={r[k]}" for k in ("batch", "wall_s", "cpu_s", "peak_mem_mib", "mem_before_mib",
                                                       "mean_atoms", "parameters", "target")
                      if k in r)
    return f"{r.get('benchmark', ''):<8} {r.get('size', ''):<8} {r.get('metric', ''):<24} {v:>10} " \
           f"{r.get('unit', ''):<12} {extra}"
