"""The generation service: one chunked, seeded, resumable runner for every caller.

:func:`generate` samples every crystal of a spec (:mod:`dosmatgen.generate.specs`) with
:class:`~dosmatgen.generate.options.SamplerOptions`: chunks of ``batch_size`` crystals, chunk k
with seed ``seed + k``, each a call of the reverse loop (:func:`dosmatgen.generate.sampler.sample`).
With a cache folder, each finished chunk is written atomically as ``chunk_<k>.npz`` (the
:mod:`~dosmatgen.generate.generated` format) with a digest of everything that decides its content
(options, guidance, start, model config, the chunk's spec); a rerun reuses matching chunks, so an
interrupted run resumes and gives the same result as an uninterrupted one, and refuses chunks made
with other settings.

:func:`regenerate` is the split-part caller (paper §3.1, Tables 1-2): one crystal per test
structure with its atom count and per-atom DOS, from the prior at T = 1000 (``t0=None``) or from
the test structure noised to ``t0`` (the paper's T = 200, 500), written to one generated-set file
whose chunks live in ``<out>.chunks/``.

>>> from dosmatgen.generate.options import SamplerOptions
>>> build_guidance(SamplerOptions(omega=2.0))
ClassifierFreeGuidance(omega=2.0)
>>> build_guidance(SamplerOptions(guidance="uncond", omega=2.0))
ClassifierFreeGuidance(omega=-1.0)
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dosmatgen.errors import ConfigError
from dosmatgen.generate.generated import GeneratedSet, concat_generated, from_batch, load_generated, save_generated
from dosmatgen.generate.options import UNCOND_OMEGA, SamplerOptions
from dosmatgen.io import check_writable, output_lock
from dosmatgen.progress import bar as progress_bar


def build_guidance(options: SamplerOptions, regressor: Any = None) -> Any:
    """The guidance object of ``options``: CFG with ω (and ω_geometry), classifier guidance with
    ``regressor`` and ``guidance_scale``, or the unconditional model (CFG at ω = -1)."""
    from dosmatgen.generate.guidance import ClassifierFreeGuidance, ClassifierGuidance

    if options.guidance == "cfg":
        return ClassifierFreeGuidance(options.omega, options.omega_geometry)
    if options.guidance == "uncond":
        return ClassifierFreeGuidance(UNCOND_OMEGA)
    if regressor is None:
        raise ConfigError("classifier guidance needs a trained time-dependent regressor (--regressor CK)")
    return ClassifierGuidance(regressor, options.guidance_scale)


def check_standardisers(a: Any, b: Any, what: str) -> None:
    """The regressor must read DOS standardised the same way as the diffusion model."""
    if a is None or b is None:
        return
    if not (np.allclose(a.mean, b.mean, rtol=1e-4, atol=1e-6) and np.allclose(a.std, b.std, rtol=1e-4, atol=1e-6)):
        raise ConfigError(f"{what}: DOS standardisation differs from the diffusion model's (trained on another split?)")


def spec_digest(spec: Any) -> str:
    """A short hash of everything a spec asks for (atom counts, DOS, masks, fixed types, ids, and
    the structure a start at t0 noises)."""
    h = hashlib.sha256()
    for tensor in (spec.num_atoms, spec.dos, spec.cond_mask, spec.fixed_mask, spec.atom_types, spec.frac_coords,
                   spec.lattices):
        h.update(np.ascontiguousarray(tensor.detach().cpu().numpy()).tobytes())
    h.update("\n".join(spec.structure_ids or []).encode())
    return h.hexdigest()[:16]


def _chunk_digest(settings: dict[str, Any], chunk: Any) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(spec_digest(chunk).encode())
    return h.hexdigest()[:16]


def generate(diffusion: Any, spec: Any, options: SamplerOptions, *, t0: int | None = None, regressor: Any = None,
             cache: str | Path | None = None, progress: bool = True, desc: str = "sampling") -> GeneratedSet:
    """Sample one crystal per crystal of ``spec`` (the one entry point of every caller).

    Args:
        diffusion: trained :class:`~dosmatgen.model.diffusion.JointDiffusion` (on its device).
        spec: a :class:`~dosmatgen.model.batch.CrystalBatch` from :mod:`dosmatgen.generate.specs`.
        options: every sampler setting; ``options.steps`` counts steps for a start at T and a start
            at ``t0`` takes :meth:`SamplerOptions.steps_from` of them.
        t0: None: start from the prior at T; else noise the spec's structure to ``t0`` and denoise.
        regressor: the time-dependent DOS regressor for ``guidance="classifier"``.
        cache: folder for resumable chunk files (None: nothing is written).
        progress: show progress bars (else progress lines, :mod:`dosmatgen.progress`).
    Returns the crystals in the spec's order, ``source_ids`` = the spec's ids, ``meta`` with the
    options, the start and the timing.
    """
    from dosmatgen.generate.sampler import sample
    from dosmatgen.generate.specs import tie_groups

    options.check()
    T = int(diffusion.timesteps)
    if t0 is not None and not 1 <= int(t0) <= T:
        raise ConfigError(f"t0 must be in 1..{T}, got {t0}")
    if options.steps is not None and options.steps > T:  # steps_from would quietly cap them at T
        raise ConfigError(f"steps {options.steps} is more than the model's T = {T} timesteps; give at most {T} "
                          "(or no steps: every timestep)")
    guidance = build_guidance(options, regressor)
    steps = options.steps_from(t0, T)
    repulsion = options.repulsion()
    settings = {"options": options.to_dict(), "guidance": repr(guidance), "t0": t0, "steps": steps,
                "config": diffusion.config}
    device = next(diffusion.parameters()).device
    ids = list(spec.structure_ids) if spec.structure_ids is not None else [f"{i:06d}" for i in range(spec.num_graphs)]
    cache = Path(cache) if cache is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    starts = range(0, spec.num_graphs, options.batch_size)
    parts: list[GeneratedSet] = []
    seconds, n_new = 0.0, 0
    bar = progress_bar(progress, starts, desc=desc, unit="chunks", disable=len(starts) == 1)
    for k, a in enumerate(bar):
        index = list(range(a, min(a + options.batch_size, spec.num_graphs)))
        chunk = spec if len(index) == spec.num_graphs else spec.graph_slice(index)
        path = cache / f"chunk_{k:05d}.npz" if cache is not None else None
        digest = _chunk_digest(settings, chunk) if path is not None else None  # it only guards cached chunks
        if path is not None and path.exists():
            part = load_generated(path)
            if part.meta.get("digest") != digest:
                raise ConfigError(f"{path} was made with other settings or structures; delete {cache} "
                                  "or choose another output")
            parts.append(part)
            continue
        tic = time.perf_counter()
        ties = None if options.tie_equal_sites is None else tie_groups(chunk, options.tie_equal_sites)
        result = sample(diffusion, chunk.to(device), guidance=guidance, t0=t0, steps=steps, step_lr=options.step_lr,
                        seed=options.seed + k, progress=None if progress and len(starts) > 1 else progress,
                        start_at_T=options.start_at_T, predictor_input=options.predictor_input,
                        allowed_types=options.allowed_types, repulsion=repulsion, tie_groups=ties,
                        type_temperature=options.type_temperature,
                        geometry_temperature=options.geometry_temperature)
        seconds += time.perf_counter() - tic
        n_new += len(index)
        part = from_batch(result, [ids[i] for i in index], {"digest": digest, "chunk": k, "seed": options.seed + k})
        if path is not None:
            save_generated(path, part)
        parts.append(part)
    meta = {"options": options.to_dict(), "guidance": options.guidance, "guidance_repr": repr(guidance),
            "omega": {"cfg": options.omega, "uncond": UNCOND_OMEGA}.get(options.guidance),
            "omega_geometry": options.omega_geometry if options.guidance == "cfg" else None,
            "guidance_scale": options.guidance_scale if options.guidance == "classifier" else None,
            "t0": t0 or T, "start": "prior" if t0 is None else "noised", "steps": steps, "timesteps": T,
            "n": spec.num_graphs, "device": str(device), "sampling_seconds": seconds,
            "structures_per_second": (n_new / seconds) if seconds > 0 else None}
    return concat_generated(parts, meta)


def regenerate(diffusion: Any, standardiser: Any, records: Sequence[Any], out: str | Path, options: SamplerOptions, *,
               t0: int | None = None, regressor: Any = None, meta: dict[str, Any] | None = None,
               progress: bool = True) -> GeneratedSet:
    """Sample one crystal per record of a split part and write the generated set to ``out``.

    Args:
        diffusion: trained diffusion model; ``standardiser``: its DOS standardiser (records hold raw DOS).
        records: test :class:`~dosmatgen.data.schema.CrystalRecord` with site DOS.
        out: output ``.npz``; its chunks live in ``<out>.chunks/`` until a rerun reuses them.
        options: the sampler settings; ``t0``: None or >= T samples from the prior (the paper's
            T = 1000), else from each record noised to ``t0``.
        regressor: for classifier guidance.
        meta: extra metadata for the output file (checkpoint paths, split ...).
    """
    from dosmatgen.generate.specs import records_spec

    T = int(diffusion.timesteps)
    start = None if t0 is None or int(t0) >= T else int(t0)
    if start is not None and start < 1:
        raise ConfigError(f"t0 must be in 1..{T}, got {t0}")
    spec = records_spec(records, standardiser)
    out = Path(out)
    check_writable(out, "--out")
    with output_lock(out, "--out"):  # a second run on the same --out stops instead of racing
        gen = generate(diffusion, spec, options, t0=start, regressor=regressor,
                       cache=out.with_name(out.name + ".chunks"), progress=progress,
                       desc=f"regenerate {options.guidance} T={start or T}")
        gen.meta.update(meta or {})
        save_generated(out, gen)
    return gen
