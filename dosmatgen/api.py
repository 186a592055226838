"""From a target site DOS to candidate crystals in a few lines of Python (issue 36)::

    import dosmatgen as dm
    model = dm.load_model("demo")                              # the shipped demo models, no training
    target = dm.target_from_file("Fe_dos.json.gz", sites=[0])  # a CompleteDos JSON or a vasprun.xml
    found = dm.generate_crystals(model, target, num_atoms=4, n=16, steps=200, seed=0)
    found[0].structure, found[0].distance                      # a pymatgen Structure, MAE to the target

Every function here is a thin layer over the package: targets are resampled with the recipe of
:mod:`dosmatgen.dos.mp_convert` (spins summed, E_F at 0, the 400-point grid of
:mod:`dosmatgen.dos.grid`), crystals come from the generation service
(:func:`dosmatgen.generate.runner.generate`) with one :class:`~dosmatgen.generate.options.SamplerOptions`,
and their site DOS from the surrogate model. The command line (``dosmatgen sample``) runs the same
service. Bad input raises a named exception (:class:`~dosmatgen.errors.DataError`,
:class:`~dosmatgen.errors.ConfigError`) with one line saying what is wrong, before any work.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dosmatgen.dos.grid import E_MAX, E_MIN, ENERGY_GRID, N_DOS
from dosmatgen.errors import CheckpointError, ConfigError, DataError
from dosmatgen.generate.options import SamplerOptions
from dosmatgen.paths import REPO_ROOT, RESOURCES

#: Models shipped with the repository, by name: the folder holding ``diffusion.pt``,
#: ``surrogate.pt`` and ``regressor.pt`` (the recorded demo run, docs/results.md).
SHIPPED_MODELS: dict[str, Path] = {"demo": REPO_ROOT / "results" / "demo_run"}


@dataclass
class Model:
    """A ``diffusion`` model with its DOS ``standardiser``, and the ``surrogate`` that judges its
    crystals (with its ``surrogate_standardiser``) and the ``regressor`` of classifier guidance when
    there are; ``name``: the shipped model's name or the checkpoint it came from."""

    diffusion: Any
    standardiser: Any
    surrogate: Any = None
    surrogate_standardiser: Any = None
    regressor: Any = None
    name: str = ""

    @property
    def device(self) -> Any:
        return next(self.diffusion.parameters()).device


@dataclass
class Target:
    """``dos``: raw site DOS rows (K, 400) on the project grid (states/eV/site, E_F at 0);
    ``source``: where they came from; ``sites``: the source's site of each row."""

    dos: np.ndarray
    source: str = "array"
    sites: list[int] = field(default_factory=list)


@dataclass
class Candidate:
    """One generated crystal: ``structure`` (None when the arrays are not a crystal), ``valid`` and,
    when it is not, the ``reason``; ``site_dos``, the surrogate's site DOS (N, 400), and
    ``distance``, the mean absolute difference of the conditioned sites' predicted DOS to their
    targets (states/eV/site); after :func:`relax_and_rank`, the ``relaxed`` structure and its
    ``formation_energy`` (eV/atom, MLFF)."""

    structure: Any
    valid: bool
    reason: str | None = None
    site_dos: np.ndarray | None = None
    distance: float | None = None
    relaxed: Any = None
    formation_energy: float | None = None

    def to_ase(self) -> Any:
        """The crystal as ASE ``Atoms`` (None when there is no structure)."""
        from pymatgen.io.ase import AseAtomsAdaptor

        return None if self.structure is None else AseAtomsAdaptor.get_atoms(self.structure)


def _load(path: Path, kind: str, device: str) -> tuple[Any, Any]:
    from dosmatgen.checkpoint import load_model as load_checkpoint

    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a {kind} checkpoint file")
    model, std, meta = load_checkpoint(path, device)
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {meta.get('kind')!r} model, not a {kind} model")
    return model, std


def load_model(name: str | Path = "demo", *, surrogate: str | Path | None = None, regressor: str | Path | None = None,
               device: str = "cpu") -> Model:
    """The models to generate with.

    Args:
        name: a shipped model's name (:data:`SHIPPED_MODELS`: ``"demo"``) or a diffusion
            checkpoint (``best.pt`` of ``dosmatgen train --kind diffusion``, or an imported
            authors' release).
        surrogate, regressor: checkpoints of the surrogate DOS model (scores the candidates) and
            the time-dependent regressor (classifier guidance); a shipped model brings both.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    """
    from dosmatgen.device import resolve_device

    dev = str(resolve_device(device))
    folder = SHIPPED_MODELS.get(str(name))
    if folder is not None:
        diffusion = folder / "diffusion.pt"
        surrogate = surrogate or folder / "surrogate.pt"
        regressor = regressor or folder / "regressor.pt"
    elif Path(name).exists():
        diffusion = Path(name)
    else:
        raise ConfigError(f"unknown model {str(name)!r}: neither a shipped model ({', '.join(SHIPPED_MODELS)}) "
                          "nor a checkpoint file")
    diff, std = _load(Path(diffusion), "diffusion", dev)
    if std is None:
        raise CheckpointError(f"{diffusion} carries no DOS standardiser; a raw target DOS cannot be used with it")
    sur, sur_std = _load(Path(surrogate), "surrogate", dev) if surrogate else (None, None)
    reg, _ = _load(Path(regressor), "regressor", dev) if regressor else (None, None)
    return Model(diff, std, sur, sur_std, reg, str(name))


# ---- targets ----------------------------------------------------------------------------------------
def electrons_below_fermi(dos: np.ndarray) -> np.ndarray:
    """Each row's integral over the grid's energies up to E_F (states per site).

    >>> float(electrons_below_fermi(np.ones((1, 400)))[0].round(1))
    10.0
    """
    below = ENERGY_GRID <= 0
    return np.asarray(dos, dtype=np.float64)[..., below].sum(-1) * (ENERGY_GRID[1] - ENERGY_GRID[0])


@functools.lru_cache(maxsize=4)
def training_electrons_below_fermi(store: str = str(RESOURCES / "builtin_dos.npz")) -> dict[int, float]:
    """The mean of :func:`electrons_below_fermi` over the sites of each element in a store (the
    built-in GPAW dataset by default): the training data's convention a foreign target is scaled to."""
    from dosmatgen.data.store import DOSStore

    st = DOSStore(store)
    sums: dict[int, list[float]] = {}
    for rec in st.records(list(st.ids)):
        if rec.dos is not None:
            for z, n in zip(rec.atomic_numbers, electrons_below_fermi(rec.dos)):
                sums.setdefault(int(z), []).append(float(n))
    return {z: float(np.mean(v)) for z, v in sums.items()}


def normalise_to_training(target: Target, atomic_numbers: Sequence[int], store: str | None = None) -> Target:
    """``target`` with each site's DOS scaled so that its integral below E_F equals the training
    data's mean for that site's element (``atomic_numbers``, one per row; the means of
    :func:`training_electrons_below_fermi` over ``store``, the built-in GPAW data when None): VASP's
    sphere projections (the Materials Project's) hold a fraction of the electrons GPAW's Mulliken
    projections assign to a site (41 % for Si, 83 % for Fe: results/mp_vs_gpaw_Si_Fe.json), so a
    foreign target fed as is asks for a DOS the model never saw. The shape is kept; sites of an
    element the training data lack, or with no states below E_F, are left as they are."""
    means = training_electrons_below_fermi(*(() if store is None else (str(store),)))
    have = electrons_below_fermi(target.dos)
    scale = np.array([means.get(int(z), h) / h if h > 0 else 1.0 for z, h in zip(atomic_numbers, have)])
    return Target(target.dos * scale[:, None], target.source + " (normalised to the training data)", target.sites)



def _checked(dos: np.ndarray, source: str, sites: Sequence[int]) -> Target:
    from dosmatgen.data.schema import check_dos_sign

    dos = np.asarray(dos, dtype=np.float64)
    if dos.ndim == 1:
        dos = dos[None]
    if dos.ndim != 2 or dos.shape[1] != N_DOS or not len(dos):
        raise DataError(f"{source}: a target needs rows of {N_DOS} points on the grid, got shape {dos.shape}")
    if not np.all(np.isfinite(dos)):
        raise DataError(f"{source}: the target DOS contains NaN or inf")
    check_dos_sign(dos, source)
    return Target(dos, source, list(sites))


def _check_window(energies: np.ndarray, source: str) -> None:
    """Energies relative to E_F must cover the model's grid, [-10, 10] eV."""
    if energies[0] > E_MIN or energies[-1] < E_MAX:
        raise DataError(f"{source}: its energies cover [{energies[0]:.2f}, {energies[-1]:.2f}] eV around E_F; the "
                        f"model's grid needs [{E_MIN:g}, {E_MAX:g}] eV")


def target_from_array(dos: Any, energies: Any = None, *, efermi: float = 0.0) -> Target:
    """A target from site DOS rows (K, E): already on the project grid when ``energies`` is None,
    else resampled from ``energies`` (eV; ``efermi`` moved to 0), which must cover the grid's
    [-10, 10] eV around E_F.

    >>> energies = np.linspace(-12, 12, 241)
    >>> target_from_array(np.exp(-energies ** 2), energies).dos.shape
    (1, 400)
    """
    dos = np.atleast_2d(np.asarray(dos, dtype=np.float64))
    if energies is None:
        return _checked(dos, "array", range(len(dos)))
    e = np.asarray(energies, dtype=np.float64) - float(efermi)
    if e.ndim != 1 or e.size != dos.shape[-1]:
        raise DataError(f"{e.size} energies for DOS rows of {dos.shape[-1]} points")
    if not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
        raise DataError("the energies must be finite and increasing")
    _check_window(e, "array")
    if not np.all(np.isfinite(dos)):
        raise DataError("the target DOS contains NaN or inf")
    return _checked(np.stack([np.interp(ENERGY_GRID, e, row) for row in dos]), "array", range(len(dos)))


def _pick(dos: np.ndarray, sites: Sequence[int] | None, source: str) -> tuple[np.ndarray, list[int]]:
    idx = list(range(len(dos))) if sites is None else [int(i) for i in sites]
    bad = [i for i in idx if not 0 <= i < len(dos)]
    if bad:
        raise DataError(f"{source}: site {bad[0]} does not exist (the structure has {len(dos)} sites, "
                        f"0..{len(dos) - 1})")
    return dos[idx], idx


def target_from_dos(complete_dos: Any, sites: Sequence[int] | None = None, source: str = "CompleteDos",
                    normalise: bool = True) -> Target:
    """A target from a pymatgen ``complete_dos`` (a ``CompleteDos`` of VASP, the Materials Project,
    any code pymatgen reads): the ``sites``' (default: every site) s + p + d projections, spins
    summed, smoothed and resampled with the recipe of
    :func:`dosmatgen.dos.mp_convert.site_dos_from_complete_dos`, any energy grid that covers the
    window. ``source`` names it in messages and in ``Target.source``. ``normalise`` (on by default,
    with a one-line notice): :func:`normalise_to_training`."""
    from dosmatgen.dos.mp_convert import site_dos_from_complete_dos

    energies = np.asarray(getattr(complete_dos, "energies", []), dtype=np.float64)
    efermi = getattr(complete_dos, "efermi", None)
    if efermi is not None and energies.size:
        _check_window(energies - efermi, source)
    try:
        rows = site_dos_from_complete_dos(complete_dos, required_points=None)
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from None
    rows, idx = _pick(rows, sites, source)
    target = _checked(rows, source, idx)
    if not normalise:
        return target
    warnings.warn(f"{source}: site DOS scaled to the training data's electrons below E_F per element "
                  "(normalise=False keeps them as they are)", stacklevel=2)
    return normalise_to_training(target, [complete_dos.structure[i].specie.Z for i in idx])


def target_from_file(path: str | Path, sites: Sequence[int] | None = None, normalise: bool = True) -> Target:
    """A target from the file at ``path``: a VASP ``vasprun.xml`` (with projected DOS: LORBIT >= 10;
    also gzip, bz2 or xz compressed) or a pymatgen ``CompleteDos`` JSON (``.json`` or ``.json.gz``,
    e.g. a Materials Project DOS); ``sites`` (site indices, default every site) and ``normalise``
    as in :func:`target_from_dos`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"target file {path} does not exist")
    if path.name.endswith((".json", ".json.gz")):
        from monty.serialization import loadfn
        from pymatgen.electronic_structure.dos import CompleteDos

        try:
            obj = loadfn(path)
        except Exception as exc:  # monty raises many types for a broken file
            raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
        cdos = obj if isinstance(obj, CompleteDos) else CompleteDos.from_dict(obj) if isinstance(obj, dict) else None
        if cdos is None:
            raise DataError(f"{path} holds a {type(obj).__name__}, not a CompleteDos")
        return target_from_dos(cdos, sites, str(path), normalise)
    from pymatgen.io.vasp import Vasprun

    try:
        run = Vasprun(str(path), parse_potcar_file=False, parse_eigen=False)
    except Exception as exc:
        raise DataError(f"cannot read {path} as a vasprun.xml: {type(exc).__name__}: {exc}") from None
    if not run.pdos:
        raise DataError(f"{path} has no projected DOS (run VASP with LORBIT >= 10)")
    return target_from_dos(run.complete_dos, sites, str(path), normalise)


def target_from_store(store: str | Path, spec: str) -> Target:
    """A target from a dosmatgen ``store`` (its path); ``spec``: ``"ID"`` (every site) or
    ``"ID:0,2"`` / ``"ID:Ni"``."""
    from dosmatgen.data.info import store_site_dos
    from dosmatgen.data.store import DOSStore

    dos, sites, _ = store_site_dos(DOSStore(store), spec)
    return _checked(dos, f"{store}:{spec}", sites)


# ---- generation -------------------------------------------------------------------------------------
def predict_site_dos(model: Model, structure: Any) -> np.ndarray:
    """The surrogate's site DOS (N, 400, states/eV/site) of a pymatgen ``structure`` (N sites),
    predicted by the surrogate of ``model`` (from :func:`load_model`)."""
    return _site_dos(model, [structure])[0]


def _site_dos(model: Model, structures: Sequence[Any]) -> list[np.ndarray]:
    """The surrogate's site DOS of several structures, in one batched call."""
    from dosmatgen.model.surrogate import predict_site_dos as predict

    if model.surrogate is None:
        raise ConfigError("this model has no surrogate (load_model(..., surrogate=CHECKPOINT))")
    items = [(np.array([s.specie.Z for s in st]), st.frac_coords, st.lattice.matrix) for st in structures]
    preds, whys = predict(model.surrogate, model.surrogate_standardiser, items, device=str(model.device))
    for dos, why in zip(preds, whys):
        if dos is None:
            raise DataError(f"the surrogate cannot read this structure: {why}")
    return [np.asarray(dos) for dos in preds]


def generate_crystals(model: Model, target: Target | None = None, *, n: int = 16, num_atoms: int | None = None,
             condition_atoms: Sequence[int] | None = None, fixed_types: dict[int, int] | None = None,
             template: Any = None, t0: int | None = None, options: SamplerOptions | None = None,
             progress: bool = True, **option_fields: Any) -> list[Candidate]:
    """Sample ``n`` crystals whose ``condition_atoms`` have the target's site DOS.

    Args:
        model: from :func:`load_model`.
        target: from a ``target_from_*`` function; its rows go to ``condition_atoms`` in order (one
            row may serve several atoms); None: unconditioned.
        n: crystals to generate.
        num_atoms: atoms per crystal (default: the template's, or one per target row).
        condition_atoms: atom indices conditioned on the target (default 0..K-1).
        fixed_types: ``{atom index: atomic number}`` clamped along the chain.
        template: a pymatgen ``Structure`` to start from, noised to ``t0`` (needs ``t0``).
        options: the sampler settings (:class:`~dosmatgen.generate.options.SamplerOptions`);
            ``option_fields`` (e.g. ``steps=200, seed=0, omega=1.0``) replace single fields.
        progress: progress bars.
    Returns one :class:`Candidate` per crystal, in sampling order, scored by the surrogate when the
    model has one.
    """
    from dosmatgen.data.schema import CrystalRecord
    from dosmatgen.data.validity import validity_reason
    from dosmatgen.generate.runner import generate as run
    from dosmatgen.generate.specs import target_spec

    opts = (options or SamplerOptions()).replace(**option_fields)
    if (template is None) != (t0 is None):
        raise ConfigError("a template needs t0 (the noise level to start from) and t0 needs a template")
    record = None if template is None else CrystalRecord.from_structure(template, "template")
    rows = None if target is None else target.dos
    spec = target_spec(n, standardiser=model.standardiser, max_z=model.diffusion.model_cfg.max_z, num_atoms=num_atoms,
                       target_rows=rows, condition_atoms=condition_atoms, fixed_types=fixed_types, template=record)
    gen = run(model.diffusion, spec, opts, t0=t0, regressor=model.regressor, progress=progress)
    cond = list(condition_atoms) if condition_atoms else list(range(0 if rows is None else len(rows)))
    cands = [Candidate(st, why is None, why) for st, why in (validity_reason(*item) for item in gen.items())]
    valid = [c for c in cands if c.valid]
    if valid and model.surrogate is not None:
        want = None if rows is None or not cond else rows[[0 if len(rows) == 1 else j for j in range(len(cond))]]
        for cand, dos in zip(valid, _site_dos(model, [c.structure for c in valid])):
            cand.site_dos = dos
            if want is not None:
                cand.distance = float(np.abs(dos[cond] - want).mean())
    return cands


def relax_and_rank(candidates: Sequence[Candidate], mlff: str = "sevenn", *, fmax: float | None = None,
                   steps: int | None = None, calc: Any = None, refs_cache: str | Path | None = None,
                   progress: bool = True) -> list[Candidate]:
    """Relax every valid candidate with an MLFF of the registry (:mod:`dosmatgen.evaluate.mlff`:
    ``"sevenn"`` offline, ``"chgnet"``, ``"orb"``; or an ASE ``calc``), fill ``relaxed`` and
    ``formation_energy`` (eV/atom against the MLFF's elemental references,
    :class:`~dosmatgen.evaluate.formation.ElementalReferences`), and return the candidates ranked
    by formation energy, then distance to the target; the ones that did not relax come last.

    ``fmax`` (eV/A) and ``steps``: FIRE's force threshold and step limit (defaults
    :data:`~dosmatgen.evaluate.mlff.DEFAULT_FMAX`, :data:`~dosmatgen.evaluate.mlff.DEFAULT_RELAX_STEPS`);
    a candidate that does not converge within them gets no formation energy. ``refs_cache``: the
    JSON file caching the elemental references (default: ``dosmatgen/elemental_refs_<mlff>.json``
    under ``$XDG_CACHE_HOME`` or ``~/.cache``). ``progress``: a progress bar."""
    from pymatgen.io.ase import AseAtomsAdaptor
    from tqdm.auto import tqdm

    from dosmatgen.evaluate.formation import ElementalReferences, formation_energy_per_atom
    from dosmatgen.evaluate.mlff import DEFAULT_FMAX, DEFAULT_RELAX_STEPS, canonical_mlff, get_calculator, relax

    fmax, steps = DEFAULT_FMAX if fmax is None else fmax, DEFAULT_RELAX_STEPS if steps is None else steps
    name = type(calc).__name__.lower() if calc is not None else canonical_mlff(mlff)
    calc = calc if calc is not None else get_calculator(name)
    refs = ElementalReferences(name, refs_cache, fmax, steps)
    for cand in tqdm([c for c in candidates if c.valid], desc=f"relax ({name})", disable=not progress):
        atoms, energy, converged = relax(AseAtomsAdaptor.get_atoms(cand.structure), calc, fmax, steps)
        symbols = atoms.get_chemical_symbols()
        known = refs.get(symbols, calc)
        if converged and np.isfinite(energy) and set(symbols) <= set(known):
            cand.relaxed = AseAtomsAdaptor.get_structure(atoms)
            cand.formation_energy = formation_energy_per_atom(symbols, energy, known)

    def key(c: Candidate) -> tuple:
        return (c.formation_energy is None, c.formation_energy or 0.0, c.distance is None, c.distance or 0.0)

    return sorted(candidates, key=key)
