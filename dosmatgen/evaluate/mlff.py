"""Machine-learned force fields for relaxing crystals (the built-in data, docs/data.md; the evaluation).

One registry of force fields: :data:`MLFF_PACKAGES` (names), :data:`MLFF_ALIASES` (other
spellings) and ``get_calculator``, which returns an ASE calculator for any of them; ``relax`` runs
FIRE on positions and cell (``FrechetCellFilter``).  SevenNet '7net-0' is the default because its
weights ship inside the ``sevenn`` wheel (no network needed).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dosmatgen.errors import ConfigError

#: Every MLFF name -> the pip package it needs; "emt" is ASE's EMT, a toy (Al, Cu, Ag, Au, Ni, Pd, Pt, H, C, N, O).
MLFF_PACKAGES: dict[str, str] = {"sevenn": "sevenn", "chgnet": "chgnet", "orb": "orb-models", "emt": "ase"}
#: The force fields of the evaluation (the config schema's ``evaluate.mlff`` enum, less the toy).
CALCULATORS = tuple(name for name in MLFF_PACKAGES if name != "emt")
#: Other spellings -> names (run configs use "7net-0", "orb-v2").
MLFF_ALIASES: dict[str, str] = {"7net-0": "sevenn", "sevennet": "sevenn", "orb-v2": "orb"}
#: Relaxation settings of the paper's protocol (FIRE + FrechetCellFilter): force threshold (eV/Å)
#: and the most FIRE steps. The one place these defaults are written.
DEFAULT_FMAX: float = 0.05
DEFAULT_RELAX_STEPS: int = 200
#: A relaxation whose cell volume changes by more than this factor (either way) blew up.
MAX_VOLUME_RATIO: float = 3.0


def limit_threads(n: int = 1) -> None:
    """One torch thread per worker process (several labelling workers share few cores)."""
    import torch

    torch.set_num_threads(int(n))
    try:
        torch.set_num_interop_threads(int(n))
    except RuntimeError:  # already set once in this process
        pass


def canonical_mlff(name: str) -> str:
    """The registry name of an MLFF spelling; :class:`ConfigError` for unknown ones."""
    key = MLFF_ALIASES.get(str(name).lower(), str(name).lower())
    if key not in MLFF_PACKAGES:
        raise ConfigError(f"unknown MLFF {name!r}; choose one of {sorted([*MLFF_PACKAGES, *MLFF_ALIASES])}")
    return key


def check_weights(name: str, weights: str | Path | None) -> None:
    """:class:`ConfigError` when a ``weights`` file is given for ``name`` but does not exist."""
    if weights is not None and not Path(weights).exists():
        raise ConfigError(f"{name} weights file {weights} does not exist")


@contextmanager
def needs_package(mlff: str, package: str) -> Iterator[None]:
    """Turn an ImportError in the block into a one-line :class:`ConfigError` naming the pip package."""
    try:
        yield
    except ImportError as exc:
        raise ConfigError(f"MLFF {mlff!r} needs the {package} package (pip install {package})") from exc


def load_orb_v2(device: str, weights: str | Path | None = None) -> Any:
    """The Orb-v2 force field of ``orb-models``, from a ``weights`` file or downloaded (once, into
    ~/.cache/cached_path). torch.compile on CUDA only (on a CPU it costs ~1 min per process). Tests
    pass a random-weight file: ``torch.save(pretrained.orb_v2_architecture().state_dict(), path)``."""
    from orb_models.forcefield import pretrained

    kw = {"weights_path": str(weights)} if weights is not None else {}
    try:
        return pretrained.orb_v2(device=device, compile=str(device).startswith("cuda"), **kw)
    except Exception as exc:  # download failure offline, or a file of another architecture
        raise ConfigError(f"Orb-v2 weights could not be loaded ({type(exc).__name__}: {' '.join(str(exc).split())}); "
                          "the download needs network access, or give a local weights file") from exc


def get_calculator(name: str = "sevenn", device: str = "cpu", weights: str | Path | None = None) -> Any:
    """An ASE calculator on torch ``device`` for the MLFF ``name`` (a name of :data:`MLFF_PACKAGES` or
    a spelling of :data:`MLFF_ALIASES`); ``weights``: a checkpoint file instead of the packaged
    (SevenNet '7net-0', offline; CHGNet) or downloaded (Orb-v2: needs network access) weights.
    :class:`ConfigError` for an unknown name, a missing package or unavailable weights."""
    name = canonical_mlff(name)
    check_weights(name, weights)
    with needs_package(name, MLFF_PACKAGES[name]):
        if name == "sevenn":
            from sevenn.calculator import SevenNetCalculator
            return SevenNetCalculator(model=str(weights) if weights is not None else "7net-0", device=device)
        if name == "chgnet":
            from chgnet.model import CHGNet
            from chgnet.model.dynamics import CHGNetCalculator
            model = CHGNet.from_file(str(weights)) if weights is not None else CHGNet.load()
            return CHGNetCalculator(model=model, use_device=device)
        if name == "orb":
            from orb_models.forcefield.calculator import ORBCalculator
            return ORBCalculator(load_orb_v2(device, weights), device=device)
        from ase.calculators.emt import EMT
        return EMT()


def intact(v0: float, v1: float, energy: float, forces: Any, max_volume_ratio: float = MAX_VOLUME_RATIO) -> bool:
    """Whether a relaxation from volume ``v0`` to ``v1`` with final ``energy`` and ``forces`` did not
    blow up: everything finite and the volume changed by less than ``max_volume_ratio`` either way."""
    ok = np.isfinite(energy) and np.all(np.isfinite(forces)) and np.isfinite(v1)
    return bool(ok and (1.0 / max_volume_ratio) < v1 / v0 < max_volume_ratio)


def relax(atoms: Any, calc: Any, fmax: float = DEFAULT_FMAX, steps: int = DEFAULT_RELAX_STEPS,
          max_volume_ratio: float = MAX_VOLUME_RATIO) -> tuple[Any, float, bool]:
    """Relax positions and cell with ASE FIRE + ``FrechetCellFilter``.

    Returns ``(relaxed_atoms, energy_eV, converged)``.  ``converged`` is False when FIRE ran out of
    steps, or when the relaxation blew up (non-finite energy/forces, or the volume changed by more
    than ``max_volume_ratio``), so callers can skip such structures.
    """
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    atoms = atoms.copy()
    atoms.calc = calc
    v0 = atoms.get_volume()
    try:
        opt = FIRE(FrechetCellFilter(atoms), logfile=None)
        converged = bool(opt.run(fmax=fmax, steps=steps))
        energy = float(atoms.get_potential_energy())
        forces = atoms.get_forces()
    except (RuntimeError, ValueError, FloatingPointError, np.linalg.LinAlgError):
        return atoms, float("nan"), False
    return atoms, energy, converged and intact(v0, atoms.get_volume(), energy, forces, max_volume_ratio)
