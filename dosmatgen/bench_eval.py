"""Evaluation benchmarks, usable alone: regeneration throughput (:func:`bench_regeneration`, chunk
files included), surrogate throughput (:func:`bench_surrogate`, graph building included) and
StructureMatcher seconds per pair (:func:`bench_structure_matcher`). :func:`register` adds them to
``dosmatgen bench`` as ``regenerate``, ``surrogate`` and ``match`` when :mod:`dosmatgen.bench`
imports this module (its ``EXTENSION_MODULES``).
"""

from __future__ import annotations

import tempfile
import time
from typing import Any, Sequence

import numpy as np
import torch

from dosmatgen.device import synchronize


def bench_regeneration(diffusion: Any, records: Sequence[Any], standardiser: Any, *, guidance: str = "cfg",
                       regressor: Any = None, t0: int | None = None, steps: int = 5, batch_size: int = 64,
                       seed: int = 0) -> dict[str, Any]:
    """Time one :func:`~dosmatgen.generate.runner.regenerate` call over ``records`` (fresh temporary
    output); ``steps`` are the steps actually taken."""
    from dosmatgen.generate.options import SamplerOptions
    from dosmatgen.generate.runner import regenerate

    T = int(diffusion.timesteps)
    start = None if t0 is None or t0 >= T else int(t0)
    options = SamplerOptions(guidance=guidance, steps=max(1, steps * T // (start or T)), batch_size=batch_size,
                             seed=seed)
    device = next(diffusion.parameters()).device
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up (TorchScript profiling, allocator) on one small chunk
        regenerate(diffusion, standardiser, list(records)[:2], f"{tmp}/warm.npz", options.replace(steps=1, batch_size=2),
                   t0=start, regressor=regressor, progress=False)
        synchronize(device)
        tic, cpu0 = time.perf_counter(), time.process_time()
        regenerate(diffusion, standardiser, records, f"{tmp}/gen.npz", options, t0=start, regressor=regressor,
                   progress=False)
        synchronize(device)
        dt, cpu = time.perf_counter() - tic, time.process_time() - cpu0
    n = len(records)
    chunks = -(-n // batch_size)
    return {"structures": n, "steps": steps, "batch_size": batch_size, "guidance": guidance, "wall_s": dt,
            "cpu_s": cpu, "structures_per_s": n / dt, "s_per_step_per_chunk": dt / (steps * chunks),
            "structures_per_s_at_1000_steps": n / dt * steps / 1000.0}


def bench_surrogate(model: Any, records: Sequence[Any], standardiser: Any = None, batch_size: int = 128,
                    device: str | torch.device = "cpu") -> dict[str, Any]:
    """Structures/s of :func:`dosmatgen.model.surrogate.predict_site_dos`."""
    from dosmatgen.model.surrogate import predict_site_dos

    items = [(r.atomic_numbers, r.frac_coords, r.lattice) for r in records]
    predict_site_dos(model, standardiser, items[:2], batch_size, device)
    tic = time.perf_counter()
    _, reasons = predict_site_dos(model, standardiser, items, batch_size, device)
    dt = time.perf_counter() - tic
    return {"structures": len(items), "wall_s": dt, "structures_per_s": len(items) / dt,
            "graph_failures": sum(r is not None for r in reasons)}


def _perturbed(structure: Any, rng: np.random.Generator, scale: float) -> Any:
    from pymatgen.core import Structure

    cart = structure.cart_coords + rng.normal(0, scale, (len(structure), 3))
    return Structure(structure.lattice, structure.species, cart, coords_are_cartesian=True, to_unit_cell=True)


def bench_structure_matcher(structures: Sequence[Any], n_pairs: int = 20, timeout_s: float = 10.0,
                            seed: int = 0) -> dict[str, Any]:
    """Seconds per pair with the paper's tolerances, for matching and non-matching pairs.

    ``structures``: pymatgen structures; pair k uses structure k mod len. Matching pair: the
    structure vs a copy with 0.05 Å Gaussian noise; non-matching pair: the structure vs the same
    composition with random fractional coordinates in a lattice scaled by 1.2 (the expensive case
    of Table 2 at large T)."""
    from pymatgen.core import Structure

    from dosmatgen.evaluate.metrics import timed_fit

    rng = np.random.default_rng(seed)
    same, other = [], []
    for k in range(n_pairs):
        s = structures[k % len(structures)]
        same.append((s, _perturbed(s, rng, 0.05)))
        shuffled = Structure(s.lattice.matrix * 1.2, s.species, rng.random((len(s), 3)))
        other.append((s, shuffled))
    out: dict[str, Any] = {"pairs": n_pairs, "timeout_s": timeout_s}
    for label, pairs in (("match", same), ("non_match", other)):
        tic = time.perf_counter()
        outcomes = [timed_fit(a, b, timeout_s) for a, b in pairs]
        dt = time.perf_counter() - tic
        out[f"s_per_pair_{label}"] = dt / len(pairs)
        out[f"{label}_outcomes"] = {o: outcomes.count(o) for o in sorted(set(outcomes))}
    return out


def register() -> bool:
    """Add ``regenerate``, ``surrogate`` and ``match`` to ``dosmatgen bench``; False when the
    bench module is not available."""
    try:
        from dosmatgen import bench as B
    except ImportError:
        return False

    def _std(recs):
        from dosmatgen.data.standardise import DOSStandardiser

        return DOSStandardiser.fit([r.dos for r in recs])

    @B.register_benchmark("regenerate", quick=True)
    def bench_regenerate_rows(ctx: Any) -> list[dict[str, Any]]:
        """Test-split regeneration throughput (structures/s, CFG, from the prior)."""
        rows = []
        recs = ctx.crystal_batch(ctx.sample_batch)
        for size in ctx.sizes:
            model = B.diffusion_for_size(ctx, size).eval()
            r = bench_regeneration(model, recs, _std(recs), steps=ctx.steps, batch_size=ctx.sample_batch,
                                   seed=ctx.seed)
            rows.append(B._row("regenerate", size, "regen_structures_per_s", r["structures_per_s"], "structures/s",
                               batch=ctx.sample_batch, timed_steps=ctx.steps, wall_s=round(r["wall_s"], 3),
                               cpu_s=round(r["cpu_s"], 3)))
            rows.append(B._row("regenerate", size, "regen_structures_per_s_1000_steps",
                               r["structures_per_s_at_1000_steps"], "structures/s", batch=ctx.sample_batch))
        return rows

    @B.register_benchmark("surrogate", quick=True)
    def bench_surrogate_rows(ctx: Any) -> list[dict[str, Any]]:
        """Surrogate DOS prediction throughput (structures/s, graph building included)."""
        from dosmatgen.model.surrogate import SurrogateDOSModel

        rows = []
        recs = ctx.crystal_batch(ctx.sample_batch)
        for size in ctx.sizes:
            torch.manual_seed(ctx.seed)
            model = SurrogateDOSModel.from_config(SurrogateDOSModel.default_config(size)).to(ctx.device)
            r = bench_surrogate(model, recs, _std(recs), batch_size=ctx.sample_batch, device=ctx.device)
            rows.append(B._row("surrogate", size, "surrogate_structures_per_s", r["structures_per_s"],
                               "structures/s", batch=ctx.sample_batch, wall_s=round(r["wall_s"], 3),
                               parameters=sum(p.numel() for p in model.parameters())))
        return rows

    @B.register_benchmark("match", quick=True)
    def bench_match_rows(ctx: Any) -> list[dict[str, Any]]:
        """StructureMatcher seconds per pair (stol 0.5, angle_tol 10, ltol 0.3)."""
        structs = [c.to_structure() for c in ctx.crystals[:20]]
        r = bench_structure_matcher(structs, n_pairs=10 if ctx.quick else 40, seed=ctx.seed)
        return [B._row("match", "-", f"s_per_pair_{k}", r[f"s_per_pair_{k}"], "s/pair", pairs=r["pairs"],
                       outcomes=r[f"{k}_outcomes"]) for k in ("match", "non_match")]

    return True


# Registered only when imported by ``dosmatgen.bench`` (its EXTENSION_MODULES hook); importing
# this module anywhere else changes nothing.
if "dosmatgen.bench" in __import__("sys").modules:
    register()
