"""``dosmatgen sample``: generate crystals whose chosen atoms have a target site DOS.

Examples::

    # 16 crystals of 4 atoms; atoms 0 and 1 conditioned on the two rows of target.npy (raw DOS,
    # states/eV on the 400-point grid -10..10 eV), classifier-free guidance omega = 1
    dosmatgen sample --checkpoint runs/diffusion/best.pt --num-atoms 4 --n 16 \\
        --target-dos target.npy --condition-atoms 0,1 --out gen/

    # regenerate a stored crystal from its own site DOS, starting from its structure noised to t0
    dosmatgen sample --checkpoint best.pt --store data.npz --target mp-1234 --template mp-1234 --t0 200 --out gen/

    # atom 0 fixed to Ni, classifier guidance with a trained regressor
    dosmatgen sample --checkpoint best.pt --num-atoms 5 --target-dos t.json --fixed-types 0=Ni \\
        --regressor runs/regressor/best.pt --guidance-scale 1 --out gen/

Target rows apply to ``--condition-atoms`` in order (one row may serve several atoms); without
``--condition-atoms`` they apply to atoms 0..K-1. Every input is checked before sampling starts;
bad input exits with status 2 and writes nothing. Output: one CIF per crystal and/or one
``structures.extxyz``, ``summary.csv`` (one row per crystal) and ``sample.json`` (the settings).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dosmatgen.commands.arguments import (add_sampler_options, atom_count, declare_paths, positive_int,
                                          sampler_options)
from dosmatgen.data.plausibility import MAX_ATOMS, check_dos, check_record
from dosmatgen.data.schema import check_dos_sign
from dosmatgen.dos.grid import N_DOS
from dosmatgen.errors import CheckpointError, ConfigError, DataError
from dosmatgen.generate.writer import STRUCTURE_FORMATS


# ---- input parsing (pure functions, tested directly) ------------------------------------------
def _as_rows(arr: Any, source: str) -> np.ndarray:
    try:
        a = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: target DOS is not a numeric array ({exc})") from exc
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] == 0:
        raise DataError(f"{source}: target DOS must be one row or a (K, {N_DOS}) array, got shape {a.shape}")
    if a.shape[1] != N_DOS:
        hint = " (it looks transposed: rows must be sites)" if a.shape[0] == N_DOS else ""
        raise DataError(f"{source}: target DOS rows have {a.shape[1]} energy points, expected {N_DOS} "
                        f"(the grid -10..10 eV){hint}")
    bad = ~np.isfinite(a)
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        raise DataError(f"{source}: target DOS contains NaN or inf (row {r}, point {c})")
    check_dos_sign(a, source)
    check_dos(a, source)
    return a


def read_target_dos(path: str | Path) -> np.ndarray:
    """Raw target DOS rows (K, 400) from .npy, .npz (key ``dos`` or the only array), .json (a
    list of 400 numbers, a list of rows, or objects with a ``dos`` entry as written by
    ``dosmatgen data target``) or .csv/.txt (one row per site, optional header line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"target DOS file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "dos" in z.files:
                    arr = z["dos"]
                elif len(z.files) == 1:
                    arr = z[z.files[0]]
                else:
                    raise DataError(f"{path}: .npz holds {z.files}; name the target array 'dos'")
        elif suffix == ".json":
            obj = json.loads(path.read_text())
            if isinstance(obj, dict):
                obj = [obj]
            if isinstance(obj, list) and obj and all(isinstance(o, dict) for o in obj):
                if not all("dos" in o for o in obj):
                    raise DataError(f"{path}: JSON objects need a 'dos' entry")
                obj = [o["dos"] for o in obj]
            arr = obj
        elif suffix in (".csv", ".txt", ".dat"):
            text = path.read_text()
            delim = "," if "," in text else None
            try:
                arr = np.loadtxt(io.StringIO(text), delimiter=delim, ndmin=2)
            except ValueError:  # a header line
                arr = np.loadtxt(io.StringIO(text), delimiter=delim, ndmin=2, skiprows=1)
        else:
            raise DataError(f"{path}: unknown target DOS format {suffix!r} (use .npy, .npz, .json or .csv)")
    except DataError:
        raise
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read target DOS {path}: {exc}") from exc
    return _as_rows(arr, str(path))


def parse_atom_list(text: str, what: str = "atom list") -> list[int]:
    """``"0,1,3"`` -> [0, 1, 3] (unique, non-negative)."""
    out = []
    for tok in text.split(","):
        tok = tok.strip()
        if not tok:
            continue
        if not tok.lstrip("-").isdigit():
            raise ConfigError(f"{what}: {tok!r} is not an atom index (expected e.g. 0,1,3)")
        i = int(tok)
        if i < 0:
            raise DataError(f"{what}: atom index {i} does not exist (indices start at 0)")
        if i in out:
            raise ConfigError(f"{what}: atom {i} listed twice")
        out.append(i)
    if not out:
        raise ConfigError(f"{what}: no atom indices given")
    return out


def parse_fixed_types(text: str) -> dict[int, int]:
    """``"0=Ni,3=O"`` (or atomic numbers, ``"0=28"``) -> {atom index: atomic number}."""
    from pymatgen.core.periodic_table import Element

    from dosmatgen.data.schema import MAX_Z

    out: dict[int, int] = {}
    for tok in text.split(","):
        tok = tok.strip()
        if not tok:
            continue
        idx, sep, el = tok.partition("=")
        if not sep or not idx.strip().isdigit() or not el.strip():
            raise ConfigError(f"--fixed-types: {tok!r} is not INDEX=ELEMENT (e.g. 0=Ni)")
        el = el.strip()
        if el.isdigit():
            z = int(el)
        else:
            try:
                z = Element(el[:1].upper() + el[1:].lower()).Z
            except (ValueError, KeyError):
                raise DataError(f"--fixed-types: unknown element {el!r}") from None
        if not 1 <= z <= MAX_Z:
            raise DataError(f"--fixed-types: unknown element with atomic number {z} (allowed 1..{MAX_Z})")
        i = int(idx)
        if i in out:
            raise ConfigError(f"--fixed-types: atom {i} listed twice")
        out[i] = z
    if not out:
        raise ConfigError("--fixed-types: nothing given (expected e.g. 0=Ni,3=O)")
    return out


def read_template(spec: str, store: Any = None):
    """A :class:`CrystalRecord` from a structure file (CIF, POSCAR, extxyz ... via pymatgen or
    ASE) or, when ``store`` is given and ``spec`` is not a file, a structure id of the store."""
    from dosmatgen.data.schema import CrystalRecord

    path = Path(spec)
    if not path.exists():
        if store is not None and spec in store:
            rec = store[spec]
            return CrystalRecord(rec.structure_id, rec.atomic_numbers, rec.frac_coords, rec.lattice)
        where = f" nor a structure id of {store.path}" if store is not None else ""
        raise DataError(f"template {spec!r} is neither a file{where}")
    try:
        with warnings.catch_warnings():  # the parsers' warnings would print before the one error line
            warnings.simplefilter("ignore")
            if path.suffix.lower() in (".xyz", ".extxyz", ".traj"):
                from ase.io import read as ase_read

                atoms = ase_read(str(path), index=0)
                rec = CrystalRecord(path.stem, atoms.numbers, atoms.get_scaled_positions(wrap=False),
                                    atoms.cell.array)
            else:
                from pymatgen.core import Structure

                structure = Structure.from_file(str(path))
                rec = CrystalRecord.from_structure(structure, path.stem)
    except DataError as exc:
        raise DataError(f"template {path}: {exc}") from exc
    except Exception as exc:  # parsers raise many types
        raise DataError(f"cannot read template {path}: {type(exc).__name__}: {exc}") from exc
    check_record(rec, f"template {path}")
    if rec.num_atoms > MAX_ATOMS:
        raise DataError(f"template {path}: {rec.num_atoms} atoms, more than MAX_ATOMS = {MAX_ATOMS} per crystal")
    return rec


def target_from_store(store: Any, spec: str) -> tuple[np.ndarray, list[int], Any]:
    """``ID`` (every site) or ``ID:0,2`` / ``ID:Ni`` -> (rows (K, 400), site indices, record)."""
    from dosmatgen.data.info import store_site_dos

    try:
        dos, idx, rec = store_site_dos(store, spec)
    except DataError as exc:
        raise DataError(f"--target: {exc}") from None
    return _as_rows(dos, f"{store.path}:{rec.structure_id}"), idx, rec


def _open_store(path: str | None):
    if path is None:
        return None
    from dosmatgen.data.store import DOSStore

    return DOSStore(path)


def _file_and_sites(spec: str, flag: str) -> tuple[str, list[int] | None]:
    """``FILE`` or ``FILE:0,2`` -> (file, sites or None)."""
    if Path(spec).exists() or ":" not in spec:
        return spec, None
    path, _, sites = spec.rpartition(":")
    return path, parse_atom_list(sites, flag)


def is_complete_dos_file(path: str) -> bool:
    """A pymatgen ``CompleteDos`` JSON (``.json.gz``, or ``.json`` holding one) rather than DOS rows."""
    if path.endswith(".json.gz"):
        return True
    if not path.endswith(".json") or not Path(path).is_file():
        return False
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and (obj.get("@class") == "CompleteDos" or {"pdos", "structure"} <= set(obj))


def foreign_target(spec: str, flag: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Rows from a vasprun.xml or a CompleteDos JSON (``FILE[:SITES]``), scaled to the training
    data's convention (:func:`dosmatgen.api.normalise_to_training`) with a one-line notice."""
    from dosmatgen.api import target_from_file

    path, sites = _file_and_sites(spec, flag)
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        target = target_from_file(path, sites)
    for note in notes:
        if "scaled to the training data" in str(note.message):
            print(f"dosmatgen sample: note: {note.message}", file=sys.stderr)
    return target.dos, {flag.lstrip("-").replace("-", "_"): spec, "target_sites": target.sites}


def build_spec(args: argparse.Namespace, standardiser: Any, max_z: int) -> tuple[Any, dict[str, Any]]:
    """Read the command's inputs and build the generation spec
    (:func:`dosmatgen.generate.specs.target_spec`); returns (CrystalBatch, description)."""
    from dosmatgen.generate.specs import target_spec

    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    if sum(bool(v) for v in (args.target_dos, args.target, args.target_vasprun)) > 1:
        raise ConfigError("give one of --target-dos FILE, --target-vasprun FILE or --target ID[:SITES]")
    store = _open_store(args.store)
    if args.target and store is None:
        raise ConfigError("--target ID[:SITES] needs --store")
    template = read_template(args.template, store) if args.template else None
    if template is not None and args.t0 is None:
        raise ConfigError("--template needs --t0 (the noise level to start from, e.g. 200)")
    if args.t0 is not None and template is None:
        raise ConfigError("--t0 needs --template (the structure to noise and denoise)")
    rows = None
    target_desc: dict[str, Any] = {}
    if args.target_vasprun:
        rows, target_desc = foreign_target(args.target_vasprun, "--target-vasprun")
    elif args.target_dos and is_complete_dos_file(_file_and_sites(args.target_dos, "--target-dos")[0]):
        rows, target_desc = foreign_target(args.target_dos, "--target-dos")
    elif args.target_dos:
        rows = read_target_dos(args.target_dos)
        target_desc = {"target_dos": str(args.target_dos)}
    elif args.target:
        rows, sites, _ = target_from_store(store, args.target)
        target_desc = {"target": args.target, "target_sites": sites}
    if args.condition_atoms and rows is None:
        raise ConfigError("--condition-atoms needs a target (--target-dos or --target)")
    cond = parse_atom_list(args.condition_atoms, "--condition-atoms") if args.condition_atoms else None
    fixed = parse_fixed_types(args.fixed_types) if args.fixed_types else {}
    spec = target_spec(args.n, standardiser=standardiser, max_z=max_z, num_atoms=args.num_atoms, target_rows=rows,
                       condition_atoms=cond, fixed_types=fixed, template=template)
    n_atoms = int(spec.num_atoms[0])
    desc = {"num_atoms": n_atoms,
            "condition_atoms": [] if rows is None else (cond or list(range(rows.shape[0]))),
            "fixed_types": {str(i): z for i, z in fixed.items()},
            "template": None if template is None else args.template, **target_desc}
    return spec, desc


def _parse_formats(text: str) -> tuple[str, ...]:
    fmts = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    unknown = sorted(set(fmts) - set(STRUCTURE_FORMATS))
    if unknown or not fmts:
        raise ConfigError(f"--format: unknown format(s) {unknown or text!r}; choose from {list(STRUCTURE_FORMATS)}")
    return fmts


def summary_rows(gen: Any, names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per generated crystal: formula, validity (with reason), cell, density, min distance."""
    from dosmatgen.data.validity import min_periodic_distance, validity_reason

    rows = []
    for name, (types, frac, lat) in zip(names, gen.items()):
        s, reason = validity_reason(types, frac, lat)
        row: dict[str, Any] = {"name": name, "num_atoms": int(len(types)), "valid": reason is None,
                               "invalid_reason": reason or ""}
        if s is not None:
            a, b, c = s.lattice.abc
            al, be, ga = s.lattice.angles
            row.update({"formula": s.composition.reduced_formula, "elements": " ".join(str(sp) for sp in s.species),
                        "volume": round(s.volume, 4), "density": round(float(s.density), 4),
                        "min_distance": round(min_periodic_distance(s), 4),
                        "a": round(a, 4), "b": round(b, 4), "c": round(c, 4),
                        "alpha": round(al, 3), "beta": round(be, 3), "gamma": round(ga, 3)})
        rows.append(row)
    return rows


def check_output_folder(out: Path) -> None:
    """``out`` must be absent, empty, or the output of an earlier ``dosmatgen sample`` (which is
    replaced); anything else is refused so that no unrelated file is ever deleted."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "sample.json").exists():
        raise ConfigError(f"--out {out} is not empty and holds no earlier 'dosmatgen sample' output; "
                          "choose a new or empty folder")


def _cmd_sample(args: argparse.Namespace) -> int:
    from dosmatgen.io import check_writable, output_lock

    fmts = _parse_formats(args.format)
    out = Path(args.out)
    check_output_folder(out)
    check_writable(out, "--out")
    with output_lock(out, "--out"):  # a second sample run into the same folder stops instead of racing
        return _sample_into(args, out, fmts)


def _sample_into(args: argparse.Namespace, out: Path, fmts: tuple[str, ...]) -> int:
    from dosmatgen.checkpoint import load_model
    from dosmatgen.generate.runner import check_standardisers, generate
    from dosmatgen.generate.writer import write_structures
    from dosmatgen.io import atomic_save_csv, atomic_save_json, staged_folder
    from dosmatgen.device import resolve_device

    options = sampler_options(args, guidance="classifier" if args.regressor else "cfg")
    if options.guidance == "classifier" and not args.regressor:
        raise ConfigError("--guidance classifier needs --regressor CHECKPOINT")
    if args.regressor and options.guidance != "classifier":
        raise ConfigError("--regressor is only used with classifier guidance")
    if args.regressor and options.omega_geometry is not None:
        raise ConfigError("--omega-geometry weights classifier-free guidance; it is not used with --regressor")
    device = resolve_device(args.device)
    diffusion, std, meta = load_model(args.checkpoint, device)
    if meta["kind"] != "diffusion":
        raise CheckpointError(f"{args.checkpoint} holds a {meta['kind']!r} model; --checkpoint needs a diffusion model")
    T = diffusion.timesteps
    if args.t0 is not None and not 1 <= args.t0 <= T:
        raise ConfigError(f"--t0 must be in 1..{T}, got {args.t0}")
    spec, desc = build_spec(args, std, diffusion.model_cfg.max_z)
    regressor = None
    if args.regressor:
        regressor, reg_std, reg_meta = load_model(args.regressor, device)
        if reg_meta["kind"] != "regressor":
            raise CheckpointError(f"{args.regressor} holds a {reg_meta['kind']!r} model; --regressor needs a regressor")
        check_standardisers(std, reg_std, f"regressor {args.regressor}")
    gen = generate(diffusion, spec, options, t0=args.t0, regressor=regressor, progress=not args.no_progress)

    names = list(gen.source_ids)
    with warnings.catch_warnings():
        # pymatgen warns once per element without a Pauling electronegativity (He, Ne, Ar) when it
        # orders a formula; the value is not used here and the user cannot act on it
        warnings.filterwarnings("ignore", message="No Pauling electronegativity")
        rows = summary_rows(gen, names)
        structures = [s for s, _ in gen.structures()]
    settings = {"checkpoint": str(args.checkpoint), "regressor": args.regressor, "options": options.to_dict(),
                "guidance": gen.meta["guidance_repr"], "t0": args.t0, "steps": gen.meta["steps"], "n": args.n,
                "model_code": meta.get("code"), **desc}
    with staged_folder(out) as stage:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No Pauling electronegativity")
            write_structures(structures, stage, fmts, names)
        atomic_save_csv(stage / "summary.csv", rows)
        atomic_save_json(stage / "sample.json", settings)
    n_valid = sum(r["valid"] for r in rows)
    print(f"generated {len(rows)} crystals ({n_valid} valid) -> {out}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="trained diffusion checkpoint (best.pt)")
    p.add_argument("--num-atoms", type=atom_count, default=None, help="atoms per crystal")
    p.add_argument("--n", type=positive_int, default=16, help="number of crystals to generate (default 16)")
    p.add_argument("--target-dos", default=None,
                   help="raw target site DOS, (K, 400) rows: .npy, .npz, .json or .csv; or FILE[:SITES] of a "
                        "pymatgen CompleteDos JSON (.json or .json.gz, e.g. a Materials Project DOS), scaled to the "
                        "training data's electrons below E_F (docs/api.md)")
    p.add_argument("--target-vasprun", default=None, metavar="FILE[:SITES]",
                   help="target site DOS from a VASP vasprun.xml with projected DOS (LORBIT >= 10), sites e.g. "
                        ":0,1; scaled like a CompleteDos")
    p.add_argument("--target", default=None, help="ID or ID:SITES (e.g. mp-1234:0,2 or mp-1234:Ni) from --store")
    p.add_argument("--store", default=None, help="dataset store for --target / --template IDs")
    p.add_argument("--condition-atoms", default=None, help="atoms conditioned on the target rows, e.g. 0,1")
    p.add_argument("--fixed-types", default=None, help="clamped atom types, e.g. 0=Ni,3=O")
    p.add_argument("--template", default=None, help="start structure (CIF/POSCAR/extxyz or a --store ID); needs --t0")
    p.add_argument("--t0", type=positive_int, default=None, help="noise the template to t0 and denoise (e.g. 200)")
    p.add_argument("--regressor", default=None, help="regressor checkpoint: classifier guidance instead of CFG")
    add_sampler_options(p.add_argument_group("sampling (one flag per SamplerOptions field)"))
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", default="cif,extxyz", help="cif, extxyz or both (default cif,extxyz)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    declare_paths(p, inputs=("checkpoint", "target_dos", "target_vasprun", "store", "template", "regressor"),
                  outputs={"out": "dir"})
    p.set_defaults(func=_cmd_sample)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sample", help="generate crystals conditioned on per-atom DOS targets",
                              description="Generate crystals whose chosen atoms have a target site DOS.",
                              epilog=__doc__.split("\n\n", 1)[1].replace("Examples::", "examples:"),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
