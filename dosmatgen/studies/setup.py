"""What every constrained-generation study (paper §3.2, §3.3) starts from: the diffusion model and
the surrogate DOS model loaded from checkpoints, the sampling settings (one
:class:`~dosmatgen.generate.options.SamplerOptions`), and the generation service's crystals for a
spec, optionally resumable from a cache folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dosmatgen.data.schema import MAX_Z, atomic_number
from dosmatgen.errors import CheckpointError, ConfigError, DataError
from dosmatgen.generate.generated import RawCrystal
from dosmatgen.generate.options import SamplerOptions


@dataclass
class SamplingConfig:
    """How every study samples: one :class:`~dosmatgen.generate.options.SamplerOptions` (all studies
    use classifier-free guidance; every group and chunk derives its seed from ``sampler.seed``),
    the torch device and progress bars."""

    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    device: str = "cpu"
    progress: bool = True

    def check(self) -> None:
        self.sampler.check()
        if self.sampler.guidance != "cfg":
            raise ConfigError(f"the studies use classifier-free guidance (paper §3.2), not {self.sampler.guidance!r}")

    @property
    def seed(self) -> int:
        return self.sampler.seed


def check_counts(n_atoms: Sequence[int] | None = None, **at_least_one: int) -> None:
    """:class:`ConfigError` unless ``n_atoms`` (when given) are positive atom counts and every other
    named value is >= 1."""
    if n_atoms is not None and (not n_atoms or any(int(n) < 1 for n in n_atoms)):
        raise ConfigError(f"n_atoms must be positive atom counts, got {list(n_atoms)}")
    for name, value in at_least_one.items():
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")


def work_root(cfg: Any, out_dir: str | Path) -> Path:
    """Where a study keeps its resumable intermediate files: ``cfg.work_dir``, else ``<out>.work``."""
    return Path(cfg.work_dir) if cfg.work_dir else Path(str(out_dir).rstrip("/") + ".work")


def guidance_text(cfg: SamplingConfig) -> str:
    """The guidance weights as a summary shows them.

    >>> guidance_text(SamplingConfig(SamplerOptions(omega=1.0, omega_geometry=0.0)))
    'omega=1.0, omega_geometry=0.0'
    """
    return cfg.sampler.describe().removeprefix("CFG ")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON-able values (tuples become lists)."""
    return json.loads(json.dumps(asdict(cfg), default=str))


@dataclass
class StudyModels:
    """The diffusion model (generation) and the surrogate (scoring), each with its own DOS
    standardiser (they may differ if trained on different splits)."""

    diffusion: Any
    diffusion_std: Any
    surrogate: Any
    surrogate_std: Any
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def max_z(self) -> int:
        """Largest atomic number the diffusion model can generate."""
        cfg = getattr(self.diffusion, "model_cfg", None)
        return int(getattr(cfg, "max_z", MAX_Z))

    @property
    def timesteps(self) -> int:
        return int(self.diffusion.schedule.timesteps)


def load_study_models(checkpoint: str | Path, surrogate: str | Path, device: str = "cpu") -> StudyModels:
    """Load the diffusion checkpoint (kind ``diffusion``) and the surrogate checkpoint (kind
    ``surrogate``); raise :class:`CheckpointError` naming the file when either is wrong."""
    from dosmatgen.checkpoint import load_model

    for label, path in (("diffusion checkpoint", checkpoint), ("surrogate checkpoint", surrogate)):
        if path is None or not Path(path).is_file():
            raise CheckpointError(f"{label} {path} does not exist")
    diff, diff_std, diff_meta = load_model(checkpoint, device)
    if diff_meta.get("kind") != "diffusion":
        raise CheckpointError(f"{checkpoint} holds a {diff_meta.get('kind')!r} model, expected 'diffusion'")
    sur, sur_std, sur_meta = load_model(surrogate, device)
    if sur_meta.get("kind") != "surrogate":
        raise CheckpointError(f"{surrogate} holds a {sur_meta.get('kind')!r} model, expected 'surrogate'")
    if diff_std is None or sur_std is None:
        raise CheckpointError("both checkpoints must carry their DOS standardiser "
                              f"(diffusion: {diff_std is not None}, surrogate: {sur_std is not None})")
    return StudyModels(diff, diff_std, sur, sur_std,
                       {"checkpoint": str(checkpoint), "surrogate": str(surrogate),
                        "diffusion_code": diff_meta.get("code"), "surrogate_code": sur_meta.get("code")})


def element_number(symbol: str | int, max_z: int = MAX_Z) -> int:
    """Atomic number of an element symbol (or number), checked against the model's type range."""
    try:
        z = atomic_number(symbol, max_z=118)
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    if z > max_z:
        raise ConfigError(f"element {symbol!r} (Z={z}) is outside the model's types 1..{max_z}")
    return z


def spec_fingerprint(*parts: Any) -> str:
    """Short hash identifying a study run (the name of its resumable work folder)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def sample_crystals(models: StudyModels, spec, cfg: SamplingConfig, seed: int, *, t0: int | None = None,
                    omega: float | None = None, desc: str = "sampling",
                    cache: str | Path | None = None) -> list[RawCrystal]:
    """The crystals of ``spec`` from the generation service
    (:func:`dosmatgen.generate.runner.generate`) with the study's sampler options, base seed
    ``seed`` and, when given, another CFG weight ``omega``; resumable with a ``cache`` folder."""
    from dosmatgen.generate.runner import generate

    options = cfg.sampler.replace(seed=int(seed), **({} if omega is None else {"omega": float(omega)}))
    gen = generate(models.diffusion, spec, options, t0=t0, cache=cache, progress=cfg.progress, desc=desc)
    return list(gen.items())
