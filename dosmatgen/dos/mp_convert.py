"""Materials Project ``CompleteDos`` → site DOS on the project grid (docs/data.md, source "mp").

The recipe of the authors' earlier site-DOS work, which the paper's "MP DOS" set follows: for each
site take the s, p, d projected DOS (``CompleteDos.get_site_spd_dos``), sum the spins, keep only
calculations on MP's 2001-point energy grid, sum s + p + d, smooth with a Gaussian filter of
σ = 7 grid points, and interpolate onto :data:`~dosmatgen.dos.grid.ENERGY_GRID` (400 points in
[-10, 10] eV relative to E_F = ``efermi``), with 0 outside the computed energy window.

A calculation that does not fit the recipe raises :class:`ConversionSkipped` whose ``reason``
says why; the downloader records it and moves on.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.dos.grid import ENERGY_GRID
from dosmatgen.errors import DataError

#: Energy points of a Materials Project DOS calculation; other lengths are skipped.
MP_GRID_POINTS: int = 2001
#: Gaussian smoothing width, in points of the source energy grid.
SMOOTH_SIGMA_POINTS: float = 7.0
#: Orbital channels summed into a site DOS.
DEFAULT_ORBITALS: tuple[str, ...] = ("s", "p", "d")


class ConversionSkipped(DataError):
    """A calculation that the MP recipe does not accept (wrong grid, missing projections...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def smooth_and_regrid(energies: np.ndarray, density: np.ndarray, sigma_points: float = SMOOTH_SIGMA_POINTS,
                      grid: np.ndarray = ENERGY_GRID) -> np.ndarray:
    """Gaussian-smooth ``density`` (σ in grid points) on its own grid, then linearly interpolate onto
    ``grid`` (same energy reference as ``energies``), 0 outside ``[energies[0], energies[-1]]``."""
    energies = np.asarray(energies, dtype=np.float64)
    density = np.asarray(density, dtype=np.float64)
    smoothed = gaussian_filter1d(density, sigma=sigma_points) if sigma_points > 0 else density
    return np.interp(grid, energies, smoothed, left=0.0, right=0.0)


def site_dos_from_complete_dos(cdos: Any, *, required_points: int | None = MP_GRID_POINTS,
                               sigma_points: float = SMOOTH_SIGMA_POINTS,
                               orbitals: Sequence[str] = DEFAULT_ORBITALS,
                               grid: np.ndarray = ENERGY_GRID) -> np.ndarray:
    """(N, len(grid)) site DOS (states/eV/site, spins summed) from a pymatgen ``CompleteDos``.

    ``required_points=None`` accepts any energy-grid length. Raises :class:`ConversionSkipped`.
    """
    if not hasattr(cdos, "get_site_spd_dos") or getattr(cdos, "structure", None) is None:
        raise ConversionSkipped(f"not a CompleteDos with site projections (got {type(cdos).__name__})")
    energies = np.asarray(cdos.energies, dtype=np.float64)
    if required_points is not None and energies.shape != (required_points,):
        raise ConversionSkipped(f"energy grid has {energies.size} points, the recipe needs {required_points}")
    if energies.size < 2 or not np.all(np.diff(energies) > 0):
        raise ConversionSkipped("energy grid is not strictly increasing")
    efermi = getattr(cdos, "efermi", None)
    if efermi is None or not np.isfinite(efermi):
        raise ConversionSkipped("no Fermi energy")
    wanted = {o.lower() for o in orbitals}
    rel = energies - float(efermi)
    out = np.zeros((len(cdos.structure), len(grid)), dtype=np.float64)
    polarised = len(getattr(cdos, "densities", {})) > 1
    for i, site in enumerate(cdos.structure):
        try:
            one = [str(o) for o, by_spin in cdos.pdos[site].items() if polarised and len(by_spin) < 2]
            if one:  # summed as it is, the site would lose one spin's states
                raise ConversionSkipped(f"site {i} ({site.species_string}): the total DOS is spin-polarised but "
                                        f"its {one[0]} projection has one spin channel")
            spd = cdos.get_site_spd_dos(site)
        except KeyError:
            raise ConversionSkipped(f"site {i} ({site.species_string}) has no projected DOS") from None
        total = np.zeros_like(energies)
        for orbital_type, dos in spd.items():
            if str(getattr(orbital_type, "name", orbital_type)).lower() not in wanted:
                continue
            dens = np.asarray(dos.get_densities(), dtype=np.float64)  # spin=None sums up and down
            if dens.shape != energies.shape:
                raise ConversionSkipped(f"site {i}: projected DOS has {dens.size} points, energies {energies.size}")
            total += dens
        if not np.all(np.isfinite(total)):
            raise ConversionSkipped(f"site {i}: projected DOS contains NaN or inf")
        out[i] = smooth_and_regrid(rel, total, sigma_points, grid)
    return out


def record_from_complete_dos(cdos: Any, structure_id: str, *, required_points: int | None = MP_GRID_POINTS,
                             sigma_points: float = SMOOTH_SIGMA_POINTS,
                             orbitals: Sequence[str] = DEFAULT_ORBITALS,
                             provenance: dict[str, Any] | None = None) -> CrystalRecord:
    """A :class:`CrystalRecord` (structure of the DOS calculation + its site DOS)."""
    dos = site_dos_from_complete_dos(cdos, required_points=required_points, sigma_points=sigma_points,
                                     orbitals=orbitals)
    prov = {"source": "mp", "engine": "VASP (Materials Project)", "efermi": float(cdos.efermi),
            "orbitals": "+".join(orbitals), "smoothing_sigma_points": sigma_points,
            "required_points": required_points}
    prov.update(provenance or {})
    try:
        return CrystalRecord.from_structure(cdos.structure, structure_id, dos, prov)
    except DataError as exc:
        raise ConversionSkipped(str(exc)) from exc
