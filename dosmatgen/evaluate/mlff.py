"""Machine-learned force fields for relaxing crystals (DESIGN §3.2 built-in data, §6 evaluation).

``get_calculator`` returns an ASE calculator; ``relax`` runs FIRE on positions and cell
(``FrechetCellFilter``).  SevenNet '7net-0' is the default because its weights ship inside the
``sevenn`` wheel (no network needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dosmatgen.errors import ConfigError

CALCULATORS = ("sevenn", "chgnet", "orb")
#: Relaxation settings of the paper's protocol (FIRE + FrechetCellFilter): force threshold (eV/Å)
#: and the most FIRE steps. The one place these defaults are written.
DEFAULT_FMAX: float = 0.05
DEFAULT_RELAX_STEPS: int = 200


def limit_threads(n: int = 1) -> None:
    """One torch thread per worker process (several labelling workers share few cores)."""
    import torch

    torch.set_num_threads(int(n))
    try:
        torch.set_num_interop_threads(int(n))
    except RuntimeError:  # already set once in this process
        pass


def get_calculator(name: str = "sevenn", device: str = "cpu", weights: str | Path | None = None) -> Any:
    """An ASE calculator for the MLFF ``name``.

    Args:
        name: ``sevenn`` (SevenNet '7net-0', offline), ``chgnet`` (optional package) or ``orb``
            (needs ``orb-models`` and network access or a local ``weights`` file).
        device: torch device.
        weights: optional checkpoint path overriding the packaged weights.

    Raises:
        ConfigError: unknown name, package not installed, or weights unavailable.
    """
    name = name.lower()
    if weights is not None and not Path(weights).exists():
        raise ConfigError(f"{name} weights file {weights} does not exist")
    if name == "sevenn":
        try:
            from sevenn.calculator import SevenNetCalculator
        except ImportError as exc:
            raise ConfigError("MLFF 'sevenn' needs the sevenn package (pip install sevenn)") from exc
        model = str(weights) if weights is not None else "7net-0"
        return SevenNetCalculator(model=model, device=device)
    if name == "chgnet":
        try:
            from chgnet.model import CHGNet
            from chgnet.model.dynamics import CHGNetCalculator
        except ImportError as exc:
            raise ConfigError("MLFF 'chgnet' is optional and not installed (pip install chgnet)") from exc
        model = CHGNet.from_file(str(weights)) if weights is not None else CHGNet.load()
        return CHGNetCalculator(model=model, use_device=device)
    if name == "orb":
        try:
            from orb_models.forcefield import pretrained
            from orb_models.forcefield.calculator import ORBCalculator
        except ImportError as exc:
            raise ConfigError("MLFF 'orb' needs the orb-models package (pip install orb-models)") from exc
        try:
            if weights is not None:
                model = pretrained.orb_v2(weights_path=str(weights), device=device)
            else:
                model = pretrained.orb_v2(device=device)
        except ConfigError:
            raise
        except Exception as exc:  # download failure offline
            raise ConfigError(f"ORB weights could not be loaded ({exc}); they need network access "
                              "or a local file passed as weights=") from exc
        return ORBCalculator(model, device=device)
    raise ConfigError(f"unknown MLFF {name!r}; choose one of {CALCULATORS}")


def relax(atoms: Any, calc: Any, fmax: float = DEFAULT_FMAX, steps: int = DEFAULT_RELAX_STEPS,
          max_volume_ratio: float = 3.0) -> tuple[Any, float, bool]:
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
    v1 = atoms.get_volume()
    ok = np.isfinite(energy) and np.all(np.isfinite(forces)) and np.isfinite(v1)
    ok = ok and (1.0 / max_volume_ratio) < v1 / v0 < max_volume_ratio
    return atoms, energy, bool(converged and ok)
