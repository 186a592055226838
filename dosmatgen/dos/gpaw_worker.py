"""Standalone GPAW site-DOS worker (docs/data.md).

Run by :mod:`dosmatgen.dos.gpaw_engine` as a separate process with the interpreter that has GPAW
(Debian's ``/usr/bin/python3``)::

    /usr/bin/python3 gpaw_worker.py job.json out.npz

This file imports only numpy, ase and gpaw (never dosmatgen or pymatgen), so it runs with
Debian's numpy/ase.  ``job.json`` holds the crystal (``numbers``, ``cell``, ``scaled_positions``)
and the protocol settings; ``out.npz`` receives the site DOS and diagnostics.  On failure the
worker writes ``out.npz`` with ``status="error"`` and ``error=<message>`` and exits with code 3.

Protocol: PBE, LCAO ``dzp``, grid spacing 0.3 Å, Fermi-Dirac 0.1 eV, SCF on a Γ-centred mesh of
``ceil(kdens_scf / a_i)`` points, then a fixed-density run on ``ceil(kdens_dos / a_i)`` points;
Mulliken weight of every state on every atom (weights sum to 1 per state), times the k-point
weight (spin factor 2 when not spin-polarised), averaged over symmetry-equivalent atoms, and
broadened with a Gaussian of width ``sigma`` onto the energy grid relative to E_F (or to the
valence-band maximum when the gap exceeds ``gap_threshold``).  Where GPAW's symmetry reduction of
either mesh gives an irreducible k-point of weight 0, both runs keep time-reversal symmetry only
(``point_group_symmetry`` in the output; :func:`ibz_has_zero_weight`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback

import numpy as np

MAGNETIC = ("Cr", "Mn", "Fe", "Co", "Ni")
INITIAL_MAGMOM = {"Cr": 3.0, "Mn": 4.0, "Fe": 3.0, "Co": 2.0, "Ni": 1.0}


class WorkerError(Exception):
    """A failure with a message the engine can record (no setup, no SCF convergence, ...)."""


def kpt_size(cell: np.ndarray, density: float) -> list[int]:
    """Γ-centred mesh with ``ceil(density / a_i)`` points along each lattice vector."""
    lengths = np.linalg.norm(np.asarray(cell), axis=1)
    return [max(1, int(math.ceil(density / a))) for a in lengths]


def check_setups(symbols: list[str], basis: str, xc: str) -> None:
    """Raise :class:`WorkerError` for elements without a PAW setup or basis file.

    A reduced basis such as ``szp(dzp)`` is read by GPAW from the ``dzp`` file, so that file is
    the one looked for."""
    from gpaw import setup_paths

    if basis.endswith(")") and "(" in basis:
        basis = basis[basis.index("(") + 1:-1]

    def found(name: str) -> bool:
        return any(os.path.exists(os.path.join(d, name + gz)) for d in setup_paths for gz in (".gz", ""))

    missing = [s for s in sorted(set(symbols)) if not (found(f"{s}.{xc}") and found(f"{s}.{basis}.basis"))]
    if missing:
        raise WorkerError(f"no GPAW {xc} setup / {basis} basis for element(s) {missing}")


def check_overlap(atoms, min_distance: float) -> None:
    """Raise :class:`WorkerError` when two atoms (periodic images included) are too close."""
    from ase.geometry import get_distances

    pos = atoms.get_positions()
    _, d = get_distances(pos, pos, cell=atoms.cell, pbc=True)
    d = d + np.eye(len(atoms)) * 1e9
    dmin = float(d.min()) if len(atoms) > 1 else 1e9
    dmin = min(dmin, float(np.linalg.norm(atoms.cell.array, axis=1).min()))
    if dmin < min_distance:
        raise WorkerError(f"atoms overlap: minimum distance {dmin:.3f} Å < {min_distance} Å")


def make_calc(job: dict, spinpol: bool, attempt: int, kpts: list[int], point_group: bool = True):
    """The protocol's GPAW calculator; ``attempt`` > 0 mixes more gently, ``point_group=False``
    keeps only time-reversal symmetry in the k-point reduction (see :func:`ibz_has_zero_weight`)."""
    from gpaw import GPAW, FermiDirac, Mixer, MixerSum

    kwargs = {} if point_group else {"symmetry": {"point_group": False}}
    if attempt > 0:  # the first try ran into the iteration cap: mix the density more gently
        kwargs["mixer"] = (MixerSum if spinpol else Mixer)(beta=0.02, nmaxold=8, weight=100.0)
    return GPAW(mode="lcao", basis=job.get("basis", "dzp"), h=job.get("h", 0.3), xc=job.get("xc", "PBE"),
                kpts={"size": kpts, "gamma": True},
                occupations=FermiDirac(job.get("width", 0.1)),
                spinpol=spinpol, maxiter=int(job.get("maxiter", 100)), txt=job.get("txt"),
                **kwargs)


def ibz_has_zero_weight(job: dict, atoms, spinpol: bool, kpts: list[int]) -> bool:
    """Whether GPAW's symmetry reduction of the Γ-centred ``kpts`` mesh gives an irreducible
    k-point of weight 0 for ``atoms``.

    GPAW 22.8 does this for some cells (MP-20's Rb2InBiCl6 mp-1114523, 2x2x2 mesh: IBZ weights
    0.125, 0.375, 0.125, 0, 0.375) and then fails in the occupation numbers with
    ``OverflowError: cannot convert float infinity to integer``.  The run then drops point-group
    symmetry (k-points reduced by time reversal only): the same physics on more k-points.
    Costs one calculator initialisation (about 1 s for a 10-atom cell)."""
    calc = make_calc(dict(job, txt=None), spinpol, 0, kpts)
    calc.initialize(atoms)
    return bool(np.any(np.asarray(calc.wfs.kd.weight_k) <= 0.0))


def equivalent_classes(calc, n_atoms: int) -> list[list[int]]:
    """Groups of symmetry-equivalent atoms from GPAW's own symmetry analysis.

    Fallback only: GPAW keeps symmorphic operations by default, so the engine passes the
    space-group (spglib) classes in the job instead."""
    parent = list(range(n_atoms))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    a_sa = np.asarray(calc.wfs.kd.symmetry.a_sa)
    for row in a_sa:
        for a, b in enumerate(row):
            ra, rb = find(a), find(int(b))
            if ra != rb:
                parent[ra] = rb
    groups: dict[int, list[int]] = {}
    for a in range(n_atoms):
        groups.setdefault(find(a), []).append(a)
    return list(groups.values())


def mulliken_states(calc, n_atoms: int, tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Energies (eV), state weights (k weight x spin factor) and Mulliken atom weights.

    Returns ``eps`` (S,), ``w`` (S,), ``q`` (N, S) over all states S of all k-points and spins, and
    the largest deviation of a state's summed weights from 1.  GPAW stores the LCAO overlap as
    a (lower-)triangle and with a complex-conjugate convention, so both are handled here and the
    sum rule is asserted.
    """
    from gpaw.utilities.tools import tri2full

    wfs = calc.wfs
    spin_factor = 2.0 / wfs.nspins
    M_a = wfs.basis_functions.M_a
    atom_of_M = np.empty(wfs.setups.nao, dtype=int)
    for a in range(n_atoms):
        atom_of_M[M_a[a]:M_a[a] + wfs.setups[a].nao] = a
    eps_all, w_all, q_all = [], [], []
    worst = 0.0
    for kpt in wfs.kpt_u:
        C = np.asarray(kpt.C_nM)
        S = np.array(kpt.S_MM, copy=True)
        if not np.allclose(S, S.T.conj(), atol=1e-8):
            tri2full(S, "L")
        best = None
        for Sv in (S, S.conj()):
            qM = (C.conj() * (C @ Sv.T)).real  # (n, M): conj(C_nM) sum_M' S_MM' C_nM'
            dev = float(np.abs(qM.sum(axis=1) - 1.0).max())
            if best is None or dev < best[1]:
                best = (qM, dev)
        qM, dev = best
        worst = max(worst, dev)
        q_an = np.zeros((n_atoms, C.shape[0]))
        np.add.at(q_an, atom_of_M, qM.T)
        eps_all.append(np.asarray(kpt.eps_n) * 27.211386245988)  # Hartree -> eV
        w_all.append(np.full(C.shape[0], wfs.kd.weight_k[kpt.k] * spin_factor))
        q_all.append(q_an)
    if worst > tol:
        raise WorkerError(f"Mulliken weights do not sum to 1 (worst state off by {worst:.2e} > {tol})")
    return np.concatenate(eps_all), np.concatenate(w_all), np.concatenate(q_all, axis=1), worst


def gaussian_dos(grid: np.ndarray, eps: np.ndarray, weights: np.ndarray, sigma: float,
                 chunk: int = 4096) -> np.ndarray:
    """``sum_s weights[:, s] * N(grid; eps_s, sigma)`` → (rows, len(grid))."""
    out = np.zeros((weights.shape[0], grid.size))
    norm = 1.0 / (math.sqrt(2.0 * math.pi) * sigma)
    for i in range(0, eps.size, chunk):
        g = np.exp(-0.5 * ((grid[None, :] - eps[i:i + chunk, None]) / sigma) ** 2) * norm
        out += weights[:, i:i + chunk] @ g
    return out


def converged_scf(job: dict, atoms, spinpol: bool, kpts: list[int], point_group: bool) -> tuple[object, list[str]]:
    """The calculator of a converged SCF on the ``kpts`` mesh, trying the protocol's mixer and then
    a gentler one (``job["attempts"]`` settings), and one line per attempt; :class:`WorkerError`
    when none converges."""
    from gpaw import KohnShamConvergenceError

    attempts = [] if point_group else ["zero-weight IBZ k-point: point-group symmetry off"]
    for attempt in range(int(job.get("attempts", 2))):
        atoms.calc = make_calc(job, spinpol, attempt, kpts, point_group)
        try:
            atoms.get_potential_energy()
            return atoms.calc, attempts + ["converged"]
        except KohnShamConvergenceError as exc:
            attempts.append(f"not converged: {exc}")
    raise WorkerError(f"SCF did not converge in {job.get('maxiter', 100)} iterations "
                      f"with {int(job.get('attempts', 2))} mixer setting(s)")


def band_edges(eps: np.ndarray, fermi: float, gap_threshold: float) -> tuple[float, float, float, float]:
    """(VBM, CBM, gap, reference energy): the reference is the VBM when the gap exceeds
    ``gap_threshold``, else the Fermi level.

    >>> band_edges(np.array([-1.0, 0.0, 2.0]), 0.5, 0.3)
    (0.0, 2.0, 2.0, 0.0)
    """
    below, above = eps[eps <= fermi], eps[eps > fermi]
    vbm = float(below.max()) if below.size else fermi
    cbm = float(above.min()) if above.size else fermi
    gap = max(0.0, cbm - vbm)
    return vbm, cbm, gap, vbm if gap > gap_threshold else fermi


def run(job: dict) -> dict:
    """The site DOS of the job's crystal by the protocol of the module docstring, with diagnostics."""
    from ase import Atoms

    t0 = time.time()
    atoms = Atoms(numbers=job["numbers"], cell=job["cell"], scaled_positions=job["scaled_positions"], pbc=True)
    symbols = atoms.get_chemical_symbols()
    check_setups(symbols, job.get("basis", "dzp"), job.get("xc", "PBE"))
    check_overlap(atoms, float(job.get("min_distance", 0.5)))
    spinpol = bool(job.get("spinpol", any(s in MAGNETIC for s in symbols)))
    if spinpol:
        atoms.set_initial_magnetic_moments([INITIAL_MAGMOM.get(s, 0.0) for s in symbols])
    k_scf = kpt_size(atoms.cell.array, float(job.get("kdens_scf", 12.0)))
    k_dos = kpt_size(atoms.cell.array, float(job.get("kdens_dos", 30.0)))
    point_group = not any(ibz_has_zero_weight(job, atoms, spinpol, k) for k in (k_scf, k_dos))
    calc, attempts = converged_scf(job, atoms, spinpol, k_scf, point_group)
    t_scf = time.time() - t0
    magmom = float(calc.get_magnetic_moment()) if spinpol else 0.0
    dcalc = calc.fixed_density(kpts={"size": k_dos, "gamma": True}, txt=job.get("txt"))
    fermi = float(dcalc.get_fermi_level())
    eps, w, q, worst = mulliken_states(dcalc, len(atoms), float(job.get("weight_tol", 1e-3)))
    vbm, cbm, gap, ref = band_edges(eps, fermi, float(job.get("gap_threshold", 0.3)))
    classes = job.get("equivalent_classes") or equivalent_classes(dcalc, len(atoms))
    q_sym = np.empty_like(q)
    for group in classes:
        q_sym[group] = q[group].mean(axis=0)
    sigma, weights = float(job.get("sigma", 0.15)), q_sym * w[None, :]
    out = {"status": "ok", "dos": gaussian_dos(np.asarray(job["energy_grid"], dtype=float), eps - ref, weights, sigma),
           "fermi": fermi, "vbm": vbm, "cbm": cbm, "gap": gap, "reference_energy": ref, "spinpol": spinpol,
           "magmom": magmom, "weight_max_dev": worst,
           "n_electrons": float(dcalc.wfs.setups.nvalence - dcalc.density.charge),
           "kpts_scf": np.array(k_scf), "kpts_dos": np.array(k_dos), "n_ibz_dos": int(len(dcalc.wfs.kd.ibzk_kc)),
           "point_group_symmetry": point_group, "equivalent_classes": json.dumps(classes),
           "attempts": json.dumps(attempts), "seconds_scf": t_scf, "seconds": time.time() - t0,
           "gpaw_version": __import__("gpaw").__version__}
    wide = job.get("wide_grid")
    if wide:
        out["wide_grid"] = np.linspace(float(wide[0]), float(wide[1]), int(wide[2]))
        out["wide_dos"] = gaussian_dos(out["wide_grid"], eps - ref, weights, sigma)
        out["fermi_minus_ref"] = fermi - ref
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: gpaw_worker.py job.json out.npz", file=sys.stderr)
        return 2
    job_path, out_path = argv[1], argv[2]
    with open(job_path) as fh:
        job = json.load(fh)
    tmp = out_path + ".tmp.npz"
    try:
        result = run(job)
    except WorkerError as exc:
        result = {"status": "error", "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any GPAW failure is recorded, not fatal
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()}
    np.savez(tmp, **result)
    os.replace(tmp, out_path)
    return 0 if result["status"] == "ok" else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv))
