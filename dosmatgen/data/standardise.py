"""Per-energy-bin DOS standardisation (docs/data.md): mean and std over all training atoms.

>>> import numpy as np
>>> s = DOSStandardiser.fit([np.ones((2, 400)), 3 * np.ones((1, 400))])
>>> round(float(s.mean[0]), 4), round(float(s.transform(np.full((1, 400), 3.0))[0, 0]), 3)
(1.6667, 1.414)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from dosmatgen.dos.grid import N_DOS
from dosmatgen.errors import DataError
from dosmatgen.io import atomic_save_json

#: Added to the std so that empty energy bins (std 0) do not divide by zero.
EPS: float = 1e-5


@dataclass(frozen=True)
class DOSStandardiser:
    mean: np.ndarray  # (400,)
    std: np.ndarray  # (400,), eps already added

    @classmethod
    def fit(cls, site_dos: Iterable[np.ndarray]) -> "DOSStandardiser":
        """Fit on an iterable of (N_i, 400) arrays (training structures only)."""
        blocks = [np.asarray(d, dtype=np.float64).reshape(-1, N_DOS) for d in site_dos]
        if not blocks:
            raise DataError("cannot fit a DOS standardiser on zero structures")
        allsites = np.concatenate(blocks, axis=0)
        if not np.all(np.isfinite(allsites)):
            bad = int(np.flatnonzero(~np.all(np.isfinite(allsites), axis=1))[0])
            raise DataError(f"cannot fit the DOS standardiser: training site {bad} has a NaN or inf DOS value")
        return cls(allsites.mean(axis=0), allsites.std(axis=0) + EPS)

    def transform(self, dos: np.ndarray) -> np.ndarray:
        return ((np.asarray(dos, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return (np.asarray(z, dtype=np.float64) * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "eps": EPS}

    @classmethod
    def from_dict(cls, d: dict) -> "DOSStandardiser":
        mean, std = np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64)
        if mean.shape != (N_DOS,) or std.shape != (N_DOS,) or not np.all(np.isfinite(mean)) \
                or not np.all(np.isfinite(std)) or np.any(std <= 0):
            raise DataError("standardiser file is malformed (need 400 finite means and 400 finite positive stds)")
        return cls(mean, std)

    def save(self, path: str | Path) -> None:
        atomic_save_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "DOSStandardiser":
        import json

        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except DataError as exc:
            raise DataError(f"DOS standardiser {path}: {exc}") from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"cannot read DOS standardiser {path}: {exc}") from exc
