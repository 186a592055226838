"""Site-projected DOS from GPAW (docs/data.md), run as an external worker process.

Debian's GPAW lives in ``/usr/bin/python3`` with Debian's numpy, so the calculation runs in
:mod:`dosmatgen.dos.gpaw_worker` as a subprocess (as ASE runs any external code): this module
writes a JSON job, runs the worker under a CPU-time limit with ``OMP_NUM_THREADS=1``, and reads the
result.

>>> engine = GPAWSiteDOSEngine(timeout_s=60)
>>> engine.protocol()["basis"]
'dzp'
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dosmatgen.data.schema import MIN_DISTANCE, CrystalRecord
from dosmatgen.dos.grid import ENERGY_GRID, N_DOS
from dosmatgen.errors import DataError, DosmatgenError
from dosmatgen.threads import THREAD_ENV

#: Elements with a PBE setup and a dzp basis in Debian's gpaw-data 22.8 (68 elements).
GPAW_ELEMENTS: frozenset[str] = frozenset(
    "Ag Al Ar As Au B Ba Be Bi Br C Ca Cd Cl Co Cr Cs Cu F Fe Ga Ge H He Hf Hg I In Ir K Kr Li Mg "
    "Mn Mo N Na Nb Ne Ni O Os P Pb Pd Pt Rb Re Rh Rn Ru S Sb Sc Se Si Sn Sr Ta Te Ti Tl V W Xe Y "
    "Zn Zr".split())
#: Spin-polarise when any of these is present (docs/data.md).
MAGNETIC_ELEMENTS: frozenset[str] = frozenset({"Cr", "Mn", "Fe", "Co", "Ni"})
WORKER_PATH: Path = Path(__file__).with_name("gpaw_worker.py")
#: A worker may take this many times its CPU-time limit on the wall clock. The CPU limit is the
#: budget; the wall-clock limit only catches a worker that hangs without computing. A worker
#: starved by other work (labelling at nice 19 beside training) is slow, not hung, and must not
#: fail: a wall-clock budget recorded such cells as failures that were not properties of the cell.
WALL_CLOCK_FACTOR: float = 10.0


class GPAWEngineError(DosmatgenError, RuntimeError):
    """GPAW could not label a structure (no setup, overlap, no SCF convergence, timeout, crash)."""


@dataclass
class SiteDOSResult:
    """Output of one GPAW labelling run.

    Attributes:
        dos: (N, 400) site DOS (states/eV/site) on :data:`ENERGY_GRID` relative to ``reference``.
        fermi: Fermi level (eV, GPAW's absolute scale).
        vbm, cbm, gap: band edges and gap (eV) from the dense k mesh.
        reference: energy used as zero (E_F, or the VBM when ``gap`` exceeds the threshold).
        spin_polarised: whether the run was spin-polarised (both spins summed in ``dos``).
        magmom: total magnetic moment (μB).
        weight_max_dev: largest deviation of a state's Mulliken weights from 1.
        seconds: wall time of the worker.
        protocol: the settings used (stored in record provenance).
        extra: anything else the worker returned (k meshes, wide-window DOS, ...).
    """

    dos: np.ndarray
    fermi: float
    vbm: float
    cbm: float
    gap: float
    reference: float
    spin_polarised: bool
    magmom: float
    weight_max_dev: float
    seconds: float
    protocol: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def equivalent_atom_classes(record: CrystalRecord, symprec: float = 1e-3) -> list[list[int]]:
    """Groups of symmetry-equivalent sites (spglib space group, fractional translations
    included), used to average the site DOS over equivalent atoms."""
    import spglib

    cell = (record.lattice, record.frac_coords % 1.0, record.atomic_numbers)
    data = spglib.get_symmetry_dataset(cell, symprec=symprec)
    if data is None:
        return [[i] for i in range(record.num_atoms)]
    eq = np.asarray(data.equivalent_atoms if hasattr(data, "equivalent_atoms") else data["equivalent_atoms"])
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(eq):
        groups.setdefault(int(r), []).append(i)
    return list(groups.values())


def niggli_reduced(record: CrystalRecord) -> CrystalRecord:
    """The same crystal in its Niggli-reduced cell, atoms in the same order with the same Cartesian
    positions (modulo lattice translations). GPAW refuses strongly skewed cells ("You have a weird
    unit cell! Try to use the maximally reduced Niggli cell"), which generated crystals can have.
    A cell that is already reduced (same lengths and angles) is returned unchanged."""
    s = record.to_structure()
    r = s.get_reduced_structure("niggli")
    if np.allclose(r.lattice.abc, s.lattice.abc, atol=1e-6) and np.allclose(r.lattice.angles, s.lattice.angles,
                                                                             atol=1e-4):
        return record
    if [site.specie.Z for site in r] != [int(z) for z in record.atomic_numbers]:  # pragma: no cover - pymatgen keeps order
        raise GPAWEngineError(f"{record.structure_id}: Niggli reduction reordered the atoms")
    return CrystalRecord(record.structure_id, record.atomic_numbers.copy(), np.mod(r.frac_coords, 1.0),
                         r.lattice.matrix, None, dict(record.provenance))


def read_worker_output(path: Path, structure_id: str) -> dict[str, Any]:
    """The arrays of a worker's ``out.npz``; :class:`GPAWEngineError` with its message when it failed."""
    with np.load(path, allow_pickle=False) as data:
        res = {k: data[k] for k in data.files}
    if str(res["status"]) != "ok":
        raise GPAWEngineError(f"{structure_id}: {res.get('error', 'unknown GPAW failure')}")
    return res


def is_overcomplete_basis_error(message: str) -> bool:
    """Whether a GPAW failure is an over-complete LCAO basis (overlap matrix not positive definite).

    >>> is_overcomplete_basis_error("LinAlgError: The leading minor of order 109 of B is not positive definite.")
    True
    >>> is_overcomplete_basis_error("GPAW timed out after 300 s")
    False
    """
    return "not positive definite" in message


class GPAWSiteDOSEngine:
    """Label crystals with GPAW site DOS (PBE, LCAO dzp; docs/data.md protocol).

    ``timeout_s`` is the CPU time one worker run may use (``RLIMIT_CPU``), so the budget means the
    same on an idle and on a busy machine; the wall clock allows :data:`WALL_CLOCK_FACTOR` times
    that before the worker counts as hung. Either way the structure fails with "timed out".

    ``fallback_basis`` (default None: off) is a second LCAO basis, e.g. ``"szp(dzp)"``, tried once
    when the first basis is numerically over-complete for the crystal: the LCAO overlap matrix is
    not positive definite, which happens with the diffuse dzp functions of heavy alkali atoms
    (Cs, Rb) at short distances. The basis used is reported in the result's ``protocol``. The
    built-in dataset keeps it off, so that every label there shares one basis; the screening
    workflow's DFT validation turns it on.
    """

    def __init__(self, timeout_s: float = 900.0, python: str = "/usr/bin/python3", kdens_scf: float = 12.0,
                 kdens_dos: float = 30.0, h: float = 0.3, basis: str = "dzp", xc: str = "PBE",
                 width: float = 0.1, sigma: float = 0.15, gap_threshold: float = 0.3, maxiter: int = 100,
                 attempts: int = 2, weight_tol: float = 1e-3, wide_grid: tuple[float, float, int] | None = None,
                 nice: int = 0, keep_dir: str | None = None, fallback_basis: str | None = None) -> None:
        self.timeout_s = float(timeout_s)
        self.python = python
        self.kdens_scf = float(kdens_scf)
        self.kdens_dos = float(kdens_dos)
        self.h = float(h)
        self.basis = basis
        self.xc = xc
        self.width = float(width)
        self.sigma = float(sigma)
        self.gap_threshold = float(gap_threshold)
        self.maxiter = int(maxiter)
        self.attempts = int(attempts)
        self.weight_tol = float(weight_tol)
        self.wide_grid = wide_grid
        self.nice = int(nice)
        self.keep_dir = keep_dir
        self.fallback_basis = fallback_basis

    def protocol(self) -> dict[str, Any]:
        """The settings that define a label (stored in provenance and store meta)."""
        return {"engine": "gpaw", "mode": "lcao", "basis": self.basis, "xc": self.xc, "h": self.h,
                "occupations": f"fermi-dirac {self.width} eV", "kdens_scf": self.kdens_scf,
                "kdens_dos": self.kdens_dos, "kpts": "gamma-centred ceil(kdens/a_i)",
                "projection": "mulliken per state per atom, symmetry-averaged",
                "sigma": self.sigma, "gap_threshold": self.gap_threshold,
                "reference": "E_F, or VBM when gap > gap_threshold",
                "spin": "polarised if Cr/Mn/Fe/Co/Ni present, spins summed",
                "maxiter": self.maxiter, "attempts": self.attempts}

    @staticmethod
    def available(python: str = "/usr/bin/python3") -> tuple[bool, str]:
        """``(True, version)`` when ``python`` can import gpaw, else ``(False, reason)``."""
        if not Path(python).exists():
            return False, f"{python} does not exist"
        try:
            out = subprocess.run([python, "-c", "import gpaw; print(gpaw.__version__)"], capture_output=True,
                                 text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"{python} could not run: {exc}"
        if out.returncode != 0:
            return False, f"{python} cannot import gpaw: {out.stderr.strip().splitlines()[-1:]}"
        return True, out.stdout.strip()

    def check(self, record: CrystalRecord) -> None:
        """Raise :class:`GPAWEngineError` for missing setups or overlapping atoms (before running)."""
        from ase.data import chemical_symbols

        symbols = [chemical_symbols[int(z)] for z in record.atomic_numbers]
        missing = sorted(set(symbols) - GPAW_ELEMENTS)
        if missing:
            raise GPAWEngineError(f"{record.structure_id}: no GPAW setup for element(s) {missing}")
        try:
            record.validate(check_distances=True)  # overlapping atoms included
        except DataError as exc:
            raise GPAWEngineError(str(exc)) from exc

    def job(self, record: CrystalRecord, basis: str | None = None) -> dict[str, Any]:
        """The JSON job the worker reads (``basis`` overrides the engine's basis). The cell is
        the Niggli-reduced cell of the same crystal, atoms in the same order (:func:`niggli_reduced`),
        so the worker's site DOS maps back to ``record``'s atoms one to one."""
        from ase.data import chemical_symbols

        record = niggli_reduced(record)
        symbols = {chemical_symbols[int(z)] for z in record.atomic_numbers}
        job = {"numbers": record.atomic_numbers.tolist(), "cell": record.lattice.tolist(),
               "scaled_positions": record.frac_coords.tolist(), "energy_grid": ENERGY_GRID.tolist(),
               "kdens_scf": self.kdens_scf, "kdens_dos": self.kdens_dos, "h": self.h, "basis": basis or self.basis,
               "xc": self.xc, "width": self.width, "sigma": self.sigma, "gap_threshold": self.gap_threshold,
               "maxiter": self.maxiter, "attempts": self.attempts, "weight_tol": self.weight_tol,
               "spinpol": bool(symbols & MAGNETIC_ELEMENTS), "min_distance": MIN_DISTANCE,
               "equivalent_classes": equivalent_atom_classes(record)}
        if self.wide_grid is not None:
            job["wide_grid"] = list(self.wide_grid)
        return job

    def compute(self, record: CrystalRecord) -> SiteDOSResult:
        """Run GPAW on ``record`` and return its site DOS; raise :class:`GPAWEngineError` on failure.

        With ``fallback_basis`` set, an over-complete first basis (overlap matrix not positive
        definite) is retried once with the fallback basis; any other failure is raised as is.
        """
        self.check(record)
        t0, basis = time.time(), self.basis
        try:
            res = self._run_worker(record, basis)
        except GPAWEngineError as exc:
            if not self.fallback_basis or not is_overcomplete_basis_error(str(exc)):
                raise
            basis = self.fallback_basis
            try:
                res = self._run_worker(record, basis)
            except GPAWEngineError as exc2:
                raise GPAWEngineError(f"{exc} ; retried with basis {basis}: {exc2}") from exc2
        return self.result_from_worker(record, res, basis, time.time() - t0)

    def result_from_worker(self, record: CrystalRecord, res: dict[str, Any], basis: str,
                           seconds: float) -> SiteDOSResult:
        """The :class:`SiteDOSResult` of one successful worker output ``res`` (its ``out.npz`` arrays)
        for ``record``; GPAWEngineError when the DOS has the wrong shape or non-finite values."""
        dos = np.asarray(res["dos"], dtype=np.float64)
        if dos.shape != (record.num_atoms, N_DOS) or not np.all(np.isfinite(dos)):
            raise GPAWEngineError(f"{record.structure_id}: worker returned a DOS of shape {dos.shape} "
                                  f"or with non-finite values")
        main = {"dos", "fermi", "vbm", "cbm", "gap", "reference_energy", "spinpol", "magmom", "weight_max_dev",
                "seconds", "status"}
        extra = {k: (v.item() if v.ndim == 0 else v) for k, v in res.items() if k not in main}
        for key in ("equivalent_classes", "attempts"):
            if key in extra:
                extra[key] = json.loads(str(extra[key]))
        return SiteDOSResult(dos=dos, fermi=float(res["fermi"]), vbm=float(res["vbm"]), cbm=float(res["cbm"]),
                             gap=float(res["gap"]), reference=float(res["reference_energy"]),
                             spin_polarised=bool(res["spinpol"]), magmom=float(res["magmom"]),
                             weight_max_dev=float(res["weight_max_dev"]), seconds=seconds,
                             protocol=dict(self.protocol(), basis=basis), extra=extra)

    def _run_worker(self, record: CrystalRecord, basis: str) -> dict[str, Any]:
        """One GPAW worker run with ``basis``: the worker's raw result arrays, or GPAWEngineError."""
        with tempfile.TemporaryDirectory(prefix="dosmatgen-gpaw-", dir=self.keep_dir) as tmp:
            job_path = Path(tmp) / "job.json"
            out_path = Path(tmp) / "out.npz"
            job_path.write_text(json.dumps(self.job(record, basis)))
            env = dict(os.environ)
            env.update({k: "1" for k in THREAD_ENV}, PYTHONPATH="", PYTHONNOUSERSITE="1")  # one job per core
            env.pop("VIRTUAL_ENV", None)
            cmd = [self.python, str(WORKER_PATH), str(job_path), str(out_path)]
            if self.nice:
                cmd = ["nice", "-n", str(self.nice)] + cmd
            proc = self._run_limited(cmd, env, tmp, record.structure_id)
            if not out_path.exists():
                tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
                raise GPAWEngineError(f"{record.structure_id}: GPAW worker exited with code {proc.returncode} "
                                      f"and no result: {' | '.join(tail)}")
            return read_worker_output(out_path, record.structure_id)

    def _run_limited(self, cmd: list[str], env: dict[str, str], cwd: str,
                     structure_id: str) -> subprocess.CompletedProcess:
        """Run ``cmd`` with ``timeout_s`` of CPU time and ``WALL_CLOCK_FACTOR`` times that of wall
        clock; GPAWEngineError ("timed out") when either runs out."""
        cpu = max(1, int(round(self.timeout_s)))
        wall = WALL_CLOCK_FACTOR * self.timeout_s
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
        try:
            # set from outside (preexec_fn is unsafe beside threads); the kernel sends SIGXCPU at
            # the soft limit and SIGKILL at the hard one
            resource.prlimit(proc.pid, resource.RLIMIT_CPU, (cpu, cpu + 10))
        except (ProcessLookupError, PermissionError):  # pragma: no cover - the worker already exited
            pass
        try:
            out, err = proc.communicate(timeout=wall)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            raise GPAWEngineError(f"{structure_id}: GPAW timed out after {wall:.0f} s of wall clock "
                                  f"(hung: its CPU-time limit is {cpu} s)") from exc
        except BaseException:  # interrupted (Ctrl-C, a stopped build): no GPAW left running
            proc.kill()
            proc.wait()
            raise
        if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            raise GPAWEngineError(f"{structure_id}: GPAW timed out: used its CPU-time limit of {cpu} s")
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    def label(self, record: CrystalRecord) -> tuple[CrystalRecord, SiteDOSResult]:
        """A copy of ``record`` with the GPAW site DOS and provenance attached."""
        res = self.compute(record)
        return self.labelled_record(record, res), res

    def labelled_record(self, record: CrystalRecord, res: SiteDOSResult) -> CrystalRecord:
        """A copy of ``record`` carrying the site DOS of ``res`` and the label's provenance."""
        prov = dict(record.provenance)
        prov.update({"engine": "gpaw", "version": str(res.extra.get("gpaw_version", "")),
                     "smearing": f"gaussian {self.sigma} eV", "gap": round(res.gap, 4),
                     "spin_polarised": res.spin_polarised, "magmom": round(res.magmom, 4),
                     "seconds": round(res.seconds, 1)})
        return CrystalRecord(record.structure_id, record.atomic_numbers.copy(), record.frac_coords.copy(),
                             record.lattice.copy(), res.dos.astype(np.float32), prov)


def cost_estimate(num_atoms: int, magnetic: bool) -> float:
    """Rough GPAW seconds on one core: ``6 + 5 * num_atoms``, ~3x when spin-polarised.

    >>> cost_estimate(4, False), cost_estimate(4, True)
    (26.0, 78.0)
    """
    return (6.0 + 5.0 * num_atoms) * (3.0 if magnetic else 1.0)
