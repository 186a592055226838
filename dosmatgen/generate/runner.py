"""Regenerate the test split from its per-atom DOS (paper §3.1, Tables 1-2).

For every test structure one crystal is sampled with the same number of atoms, conditioned on
each atom's DOS, either from the prior at T (``t0=None``; the paper's T = 1000) or from the test
structure noised to ``t0`` (the paper's T = 200, 500). Guidance is classifier-free (the
conditional diffusion model, ω = 1) or classifier guidance (the unconditional mode of the same
diffusion model plus the gradient of a time-dependent DOS regressor). A third mode, ``"uncond"``,
is a baseline outside the paper: the unconditional mode alone, i.e. classifier-free guidance at
ω = -1, where (1 + ω) eps(S_t, y) - ω eps(S_t, ∅) = eps(S_t, ∅) (one forward pass with every
atom's condition masked, :class:`~dosmatgen.model.guidance.ClassifierFreeGuidance`). It keeps the
test structure's atom count (and, for t0 < T, its noised start) but never sees its DOS, so its
element accuracy and match rates are what the DOS condition must beat.

Work is cut into chunks of ``batch_size`` structures; chunk k is sampled with seed ``seed + k``
and written atomically to ``<out>.chunks/chunk_<k>.npz``, so an interrupted run resumes where it
stopped and gives the same result as an uninterrupted one. Each chunk records the settings it was
made with; a rerun with other settings refuses to mix them.

Generated-set file (``.npz``, read with :func:`load_generated`)::

    format          "dosmatgen-generated"
    version         1
    source_ids      (B,) str   id of the test structure that conditioned (and, for t0 < T, seeded)
                               generated crystal b; the generated crystals are in this order
    offsets         (B+1,)     atoms of crystal b are rows offsets[b]:offsets[b+1]
    atomic_numbers  (M,) int   generated types (1..100)
    frac_coords     (M, 3)     fractional coordinates in [0, 1) (may be NaN for a broken sample)
    lattices        (B, 3, 3)  lattice rows, Å (may be singular for a broken sample)
    meta            JSON str   {"guidance": "cfg"|"classifier"|"uncond", "omega", "guidance_scale",
                                "t0": 1000|500|200 (the paper's T), "start": "prior"|"noised",
                                "steps", "step_lr", "seed", "batch_size", "n", "checkpoint",
                                "regressor", "store", "split", "subset", "limit", "device",
                                "sampling_seconds", "structures_per_second", "code"}

Nothing is validated on write: broken samples are kept so that the metrics can count them.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from dosmatgen.data.schema import require_site_dos
from dosmatgen.errors import ConfigError, DataError
from dosmatgen.io import ARCHIVE_ERRORS, atomic_temp_path, check_writable, output_lock

FORMAT = "dosmatgen-generated"
GUIDANCE_MODES: tuple[str, ...] = ("cfg", "classifier", "uncond")
#: The CFG weight at which classifier-free guidance is the unconditional model.
UNCOND_OMEGA: float = -1.0


@dataclass
class GeneratedSet:
    """Generated crystals aligned with the test structures that conditioned them."""

    source_ids: list[str]
    offsets: np.ndarray
    atomic_numbers: np.ndarray
    frac_coords: np.ndarray
    lattices: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.source_ids)

    def item(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(atomic_numbers, frac_coords, lattice)`` of crystal ``i`` (raw, possibly invalid)."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.atomic_numbers[a:b], self.frac_coords[a:b], self.lattices[i]

    def items(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for i in range(len(self)):
            yield self.item(i)

    def structures(self) -> list[tuple[Any, str | None]]:
        """``(Structure or None, reason)`` per crystal (:func:`metrics.build_structure`)."""
        from dosmatgen.evaluate.metrics import build_structure

        return [build_structure(*it) for it in self.items()]

    def subset(self, index: Sequence[int]) -> "GeneratedSet":
        """The crystals ``index`` (in that order) as a new set with the same metadata."""
        index = list(index)
        if not index:
            raise DataError("empty subset of a generated set")
        items = [self.item(i) for i in index]
        counts = [len(z) for z, _, _ in items]
        return GeneratedSet([self.source_ids[i] for i in index], np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                            np.concatenate([z for z, _, _ in items]), np.concatenate([x for _, x, _ in items]),
                            np.stack([lat for _, _, lat in items]), dict(self.meta))


def concat_generated(parts: Sequence[GeneratedSet], meta: dict[str, Any] | None = None) -> GeneratedSet:
    parts = list(parts)
    if not parts:
        raise DataError("no generated structures to concatenate")
    counts = np.concatenate([np.diff(p.offsets) for p in parts])
    return GeneratedSet([s for p in parts for s in p.source_ids], np.concatenate([[0], np.cumsum(counts)]),
                        np.concatenate([p.atomic_numbers for p in parts]), np.concatenate([p.frac_coords for p in parts]),
                        np.concatenate([p.lattices for p in parts]), dict(meta or parts[0].meta))


def save_generated(path: str | Path, gen: GeneratedSet) -> None:
    """Write ``gen`` atomically in the format of the module docstring."""
    arrays = {
        "format": np.array(FORMAT), "version": np.array(1),
        "source_ids": np.array(gen.source_ids, dtype=str), "offsets": np.asarray(gen.offsets, dtype=np.int64),
        "atomic_numbers": np.asarray(gen.atomic_numbers, dtype=np.int16),
        "frac_coords": np.asarray(gen.frac_coords, dtype=np.float64),
        "lattices": np.asarray(gen.lattices, dtype=np.float64).reshape(-1, 3, 3),
        "meta": np.array(json.dumps(gen.meta, sort_keys=True, default=str)),
    }
    with atomic_temp_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def load_generated(path: str | Path) -> GeneratedSet:
    """Read a generated set written by :func:`save_generated`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"generated-structure file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "format" not in z.files or str(z["format"]) != FORMAT:
                raise DataError(f"{path} is not a dosmatgen generated-structure file (no format '{FORMAT}')")
            gen = GeneratedSet([str(s) for s in z["source_ids"]], z["offsets"].astype(np.int64),
                               z["atomic_numbers"].astype(np.int64), z["frac_coords"].astype(np.float64),
                               z["lattices"].astype(np.float64), json.loads(str(z["meta"])))
    except ARCHIVE_ERRORS as exc:
        raise DataError(f"{path} is not a readable generated-structure file (truncated or corrupt?): {exc}") from exc
    if len(gen.offsets) != len(gen.source_ids) + 1 or gen.lattices.shape != (len(gen.source_ids), 3, 3):
        raise DataError(f"{path} is corrupt: offsets/lattices do not match the number of structures")
    return gen


def from_batch(batch: Any, source_ids: Sequence[str], meta: dict[str, Any] | None = None) -> GeneratedSet:
    """A :class:`GeneratedSet` from the sampler's :class:`~dosmatgen.model.batch.CrystalBatch`."""
    types = batch.atom_types.detach().cpu().numpy().astype(np.int64)
    frac = batch.frac_coords.detach().cpu().double().numpy()
    lat = batch.lattices.detach().cpu().double().numpy()
    offsets = batch.ptr.cpu().numpy().astype(np.int64)
    if len(source_ids) != len(offsets) - 1:
        raise DataError(f"{len(source_ids)} source ids for {len(offsets) - 1} generated crystals")
    return GeneratedSet(list(source_ids), offsets, types, frac, lat, dict(meta or {}))


# ----------------------------------------------------------------------------------------------
# guidance and steps
# ----------------------------------------------------------------------------------------------
def build_guidance(mode: str, *, omega: float = 1.0, omega_geometry: float | None = None, regressor: Any = None,
                   scale: float = 1.0) -> Any:
    """Classifier-free guidance with ``omega`` (and ``omega_geometry`` on coordinates and lattice;
    None: ``omega``), classifier guidance with ``regressor``/``scale``, or the unconditional model
    (``"uncond"``: CFG at ω = -1; the omegas are not used)."""
    from dosmatgen.model.guidance import ClassifierFreeGuidance, ClassifierGuidance

    if mode == "cfg":
        return ClassifierFreeGuidance(omega, omega_geometry)
    if mode == "uncond":
        return ClassifierFreeGuidance(UNCOND_OMEGA)
    if mode == "classifier":
        if regressor is None:
            raise ConfigError("classifier guidance needs a trained time-dependent regressor (--regressor CK)")
        return ClassifierGuidance(regressor, scale)
    raise ConfigError(f"unknown guidance {mode!r}; choose one of {GUIDANCE_MODES}")


def steps_for_start(steps: int | None, t0: int, timesteps: int) -> int | None:
    """Reverse steps for a start at ``t0`` when ``steps`` is the count for a start at T (same
    stride): ``max(1, round(steps * t0 / T))``; ``None`` = every timestep."""
    if steps is None:
        return None
    if steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {steps}")
    return max(1, min(t0, int(round(steps * t0 / timesteps))))


def check_standardisers(a: Any, b: Any, what: str) -> None:
    """The regressor must read DOS standardised the same way as the diffusion model."""
    if a is None or b is None:
        return
    if not (np.allclose(a.mean, b.mean, rtol=1e-4, atol=1e-6) and np.allclose(a.std, b.std, rtol=1e-4, atol=1e-6)):
        raise ConfigError(f"{what}: DOS standardisation differs from the diffusion model's (trained on another split?)")


# ----------------------------------------------------------------------------------------------
# the driver
# ----------------------------------------------------------------------------------------------
def _settings_digest(settings: dict[str, Any], ids: Sequence[str]) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update("\n".join(ids).encode())
    return h.hexdigest()[:16]


def regenerate(diffusion: Any, standardiser: Any, records: Sequence[Any], out: str | Path, *,
               guidance_mode: str = "cfg", guidance: Any = None, t0: int | None = None,
               steps: int | None = None, step_lr: float = 1e-5, start_at_T: bool = False,
               predictor_input: str = "corrected", repulsion: Any = None, batch_size: int = 64, seed: int = 0,
               meta: dict[str, Any] | None = None, progress: bool = True) -> GeneratedSet:
    """Sample one crystal per test record and write the generated set to ``out``.

    Args:
        diffusion: trained :class:`~dosmatgen.model.diffusion.JointDiffusion` (on its device).
        standardiser: the DOS standardiser saved with the diffusion checkpoint (records hold raw DOS).
        records: test :class:`~dosmatgen.data.schema.CrystalRecord` with DOS.
        out: output ``.npz``; chunks live in ``<out>.chunks/``.
        guidance_mode: ``"cfg"``, ``"classifier"`` or ``"uncond"`` (recorded in the metadata).
        guidance: the guidance object (default :func:`build_guidance` of ``guidance_mode``: CFG
            with ω = 1, or the unconditional model; classifier guidance needs its regressor).
        t0: starting timestep; ``None`` or ``>= T`` samples from the prior (paper's T = 1000).
        steps: reverse steps actually taken (the sampler strides evenly); None = all.
        step_lr: Langevin corrector scale.
        start_at_T, predictor_input: sampler options of :func:`~dosmatgen.model.sampler.sample`
            (the authors' generation: True, ``"pre_corrector"``).
        repulsion: the sampler's pair-repulsion option
            (:class:`~dosmatgen.model.repulsion.PairRepulsion`; None, the paper: off).
        batch_size: structures per chunk (one sampler call each).
        seed: chunk k uses ``seed + k``.
        meta: extra metadata for the output file (checkpoint paths, split ...).
    """
    from dosmatgen.model.batch import CrystalBatch
    from dosmatgen.model.sampler import sample

    if guidance_mode not in GUIDANCE_MODES:
        raise ConfigError(f"unknown guidance {guidance_mode!r}; choose one of {GUIDANCE_MODES}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    guidance = guidance if guidance is not None else build_guidance(guidance_mode)
    records = require_site_dos(records, "to condition on")
    T = int(diffusion.timesteps)
    start_t = None if t0 is None or int(t0) >= T else int(t0)
    if start_t is not None and start_t < 1:
        raise ConfigError(f"t0 must be in 1..{T}, got {t0}")
    out = Path(out)
    chunk_dir = out.with_name(out.name + ".chunks")
    check_writable(out, "--out")
    if not math.isfinite(step_lr) or step_lr < 0:
        raise ConfigError(f"step_lr must be a finite number >= 0, got {step_lr}")
    with output_lock(out, "--out"):  # a second run on the same --out stops instead of racing
        chunk_dir.mkdir(parents=True, exist_ok=True)
        settings = {"guidance": guidance_mode, "guidance_repr": repr(guidance), "t0": start_t, "steps": steps,
                    "step_lr": step_lr, "start_at_T": start_at_T, "predictor_input": predictor_input, "seed": seed,
                    "batch_size": batch_size, "config": diffusion.config}
        if repulsion is not None:  # absent when off, so earlier chunks keep their digest
            settings["repulsion"] = repr(repulsion)
        device = next(diffusion.parameters()).device
        chunks = [records[i:i + batch_size] for i in range(0, len(records), batch_size)]
        parts: list[GeneratedSet] = []
        seconds, n_new = 0.0, 0
        for k, chunk in enumerate(tqdm(chunks, desc=f"regenerate {guidance_mode} T={start_t or T}", disable=not progress)):
            ids = [r.structure_id for r in chunk]
            digest = _settings_digest(settings, ids)
            path = chunk_dir / f"chunk_{k:05d}.npz"
            if path.exists():
                part = load_generated(path)
                if part.meta.get("digest") != digest:
                    raise ConfigError(f"{path} was made with other settings or structures; delete {chunk_dir} "
                                      "or choose another --out")
                parts.append(part)
                continue
            spec = CrystalBatch.from_records(chunk, standardiser).to(device)
            tic = time.perf_counter()
            result = sample(diffusion, spec, guidance=guidance, t0=start_t, steps=steps, step_lr=step_lr,
                            start_at_T=start_at_T, predictor_input=predictor_input, seed=seed + k, progress=False,
                            repulsion=repulsion)
            seconds += time.perf_counter() - tic
            n_new += len(chunk)
            part = from_batch(result, ids, {"digest": digest, "chunk": k, "seed": seed + k})
            save_generated(path, part)
            parts.append(part)
        info = {"guidance": guidance_mode, "t0": start_t or T, "start": "prior" if start_t is None else "noised",
                "steps": steps, "step_lr": step_lr, "start_at_T": start_at_T, "predictor_input": predictor_input,
                "repulsion": None if repulsion is None else repr(repulsion),
                "seed": seed, "batch_size": batch_size, "n": len(records),
                "timesteps": T, "guidance_repr": repr(guidance), "sampling_seconds": seconds,
                "structures_per_second": (n_new / seconds) if seconds > 0 else None, "device": str(device)}
        info.update(meta or {})
        gen = concat_generated(parts, info)
        save_generated(out, gen)
    return gen


def write_cifs(gen: GeneratedSet, out_dir: str | Path) -> int:
    """One CIF per buildable generated crystal, named ``<index>_<source id>.cif``; returns how many."""
    from dosmatgen.model.sampler import write_structures

    structs = [s for s, _ in gen.structures()]
    names = [f"{i:06d}_{''.join(c if c.isalnum() or c in '-_.' else '_' for c in sid)}"
             for i, sid in enumerate(gen.source_ids)]
    written = write_structures(structs, out_dir, fmt=("cif",), names=names)
    return len(written["cif"])
