"""``dosmatgen studies``: the constrained-generation studies (paper §3.2), the IrO2 screening
workflow (§3.3), the energy-window / guidance sweep (beyond the paper) and their figures.

    dosmatgen studies masked      --checkpoint D.pt --surrogate S.pt --store STORE --out DIR [--n 50 --natoms 4 5 6 7]
    dosmatgen studies template    --checkpoint D.pt --surrogate S.pt --store STORE --out DIR [--n 50 --t0 200 350 500 --template CIF|ID]
    dosmatgen studies fixed-type  --checkpoint D.pt --surrogate S.pt --store STORE --out DIR [--n 50 --elements Ti Co Cu Pd]
    dosmatgen studies screen      --checkpoint D.pt --surrogate S.pt --store STORE --out DIR [--n-per-natoms 2000 --threshold -1.5 --top-k 8 --dft]
    dosmatgen studies window-sweep --checkpoint D.pt --surrogate S.pt --store STORE --out DIR [--windows -10:10 -2:2 --omegas 0 0.5 1 2 4]
    dosmatgen studies figures     --results DIR --out figures/

Each study writes DIR/summary.csv, summary.md, candidates.csv, results.json and DIR/cifs/ in one
atomic rename. The target site DOS comes from the store (Ni in L1_2 Au3Ni for the §3.2 studies,
Ir in rutile IrO2 for the screen and the sweep) or, with --mp, from the Materials Project.
Bad inputs (unknown element, missing template, conditioned atom index out of range, unknown
window) are refused before any sampling.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from dosmatgen.commands.arguments import (add_sampler_options, atom_count, declare_paths, finite, non_negative,
                                          non_negative_int, positive, positive_int, sampler_options)
from dosmatgen.errors import ConfigError
from dosmatgen.evaluate.mlff import DEFAULT_FMAX, DEFAULT_RELAX_STEPS

#: Study -> default target preset.
DEFAULT_TARGET = {"masked": "ni-au3ni", "template": "ni-au3ni", "fixed-type": "ni-au3ni", "screen": "ir-iro2",
                  "window-sweep": "ir-iro2"}
#: Lets "-10:10" (an energy window) be read as a value, not as an option.
_WINDOW_OR_NUMBER = re.compile(r"^-\d+(\.\d*)?(:-?\d+(\.\d*)?)?$|^-\.\d+$")


def register(subparsers) -> None:
    parser = subparsers.add_parser("studies", help="constrained-generation studies, IrO2 screening, window sweep, "
                                   "and their figures", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="studies_command", metavar="STUDY")
    sub.required = True

    p = _study_parser(sub, "masked", "paper §3.2.1 / Fig. 4: first atom conditioned, the others free")
    p.add_argument("--n", type=positive_int, default=50, help="candidates per atom count (paper: 50)")
    p.add_argument("--natoms", "--n-atoms", dest="natoms", type=atom_count, nargs="+", default=[4, 5, 6, 7],
                   help="atom counts, one group each (paper: 4 5 6 7)")
    p.add_argument("--cond-atoms", type=non_negative_int, nargs="+", default=[0],
                   help="indices of the conditioned atoms (paper: 0, the first atom)")
    p.set_defaults(func=_locked(run_masked_cmd))

    p = _study_parser(sub, "template", "paper §3.2.2 / Fig. 5: start from a noised template at t0")
    p.add_argument("--n", type=positive_int, default=50, help="candidates per t0 (paper: 50)")
    p.add_argument("--t0", type=positive_int, nargs="+", default=[200, 350, 500], help="starting timesteps (paper: 200 350 500)")
    p.add_argument("--template", help="template: a CIF/POSCAR file or a structure_id of the store (default: a "
                   "Zn2Sn6-like all-metal binary of ~8 atoms chosen from the store by a fixed rule; paper: "
                   "Zn2Sn6, mp-971919)")
    p.add_argument("--cond-atoms", type=non_negative_int, nargs="+",
                   help="template atom indices to condition (default: the minority-element atoms)")
    p.add_argument("--template-size", type=positive_int, default=8, help="preferred atom count of the chosen template")
    p.add_argument("--match-timeout", type=positive, default=10.0, help="StructureMatcher timeout per pair (s)")
    p.set_defaults(func=_locked(run_template_cmd))

    p = _study_parser(sub, "fixed-type", "paper §3.2.3 / Fig. 6: first atom's element clamped")
    p.add_argument("--n", type=positive_int, default=50, help="candidates per element (paper: 50)")
    p.add_argument("--elements", nargs="+", default=["Ti", "Co", "Cu", "Pd"], help="clamped elements (paper: Ti Co Cu Pd)")
    p.add_argument("--natoms", "--n-atoms", dest="natoms", type=atom_count, nargs="+", default=[4, 5, 6, 7],
                   help="atom counts the candidates cycle through")
    p.set_defaults(func=_locked(run_fixed_type_cmd))

    p = _study_parser(sub, "screen", "paper §3.3 / Fig. 7, 8, C.1: generate, relax, filter by E_f, rank by DOS, DFT")
    p.add_argument("--n-per-natoms", type=positive_int, default=2000, help="candidates per atom count (paper: 2000)")
    p.add_argument("--natoms", "--n-atoms", dest="natoms", type=atom_count, nargs="+", default=[4, 5, 6, 7, 8],
                   help="atom counts (paper: 4 5 6 7 8)")
    p.add_argument("--threshold", type=finite, default=-1.5, help="keep relaxed E_f <= this, eV/atom (paper: -1.5)")
    p.add_argument("--fallback-pool", type=non_negative_int, default=0,
                   help="if nothing passes, rank the max(top-k, this) lowest-E_f candidates")
    p.add_argument("--top-k", type=positive_int, default=8, help="candidates validated with DFT (paper: 8)")
    _mlff_options(p)
    p.add_argument("--dft", action="store_true", help="validate the top k with GPAW DFT (off unless given)")
    p.add_argument("--dft-timeout", type=positive, default=900.0, help="GPAW wall-time limit per structure (s)")
    p.add_argument("--dft-fallback-basis", default="szp(dzp)",
                   help="LCAO basis tried once when dzp is over-complete for a crystal (overlap matrix not "
                        "positive definite, e.g. Cs at short distances); 'none' turns the retry off")
    p.add_argument("--dft-workers", type=positive_int, default=1, help="concurrent GPAW runs (one core each)")
    p.add_argument("--dft-max-length", type=positive, default=30.0,
                   help="skip DFT for a crystal with a longer lattice vector (Å; protects memory)")
    p.add_argument("--dft-max-volume-per-atom", type=positive, default=100.0,
                   help="skip DFT for a crystal with more volume per atom (Å^3)")
    p.set_defaults(func=_locked(run_screen_cmd))

    p = _study_parser(sub, "window-sweep", "beyond the paper: energy-window targets x guidance strength ω")
    p.add_argument("--n", type=positive_int, default=50, help="candidates per (window, ω)")
    p.add_argument("--natoms", "--n-atoms", dest="natoms", type=atom_count, nargs="+", default=[4, 5, 6, 7, 8],
                   help="atom counts the candidates cycle through")
    p.add_argument("--windows", nargs="+", default=["-10:10", "-2:2"], metavar="LO:HI",
                   help="energy windows around E_F in eV; -10:10 is the whole DOS (the paper's target)")
    p.add_argument("--omegas", type=non_negative, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 4.0],
                   help="classifier-free guidance strengths swept")
    p.add_argument("--score-window", metavar="LO:HI", help="common scoring window (default: the narrowest window)")
    p.add_argument("--threshold", type=finite, default=-1.5, help="'stable' means relaxed E_f <= this (eV/atom)")
    p.add_argument("--no-formation", action="store_true", help="skip the MLFF formation energies")
    _mlff_options(p)
    p._negative_number_matcher = _WINDOW_OR_NUMBER  # "-2:2" is a value (argparse < 3.13 would call it an option)
    p.set_defaults(func=_locked(run_window_cmd))

    p = sub.add_parser("figures", help="draw Fig. 4-8, C.1 and the window-sweep figure from study folders",
                       description="Draw every figure the study folders (each with results.json) under --results "
                                   "allow: fig4_masked, fig5_template, fig6_fixed_type, fig7_screen_formation, "
                                   "fig8_screen_dos, figC1_screen_structures, window_sweep (.png + .pdf).")
    p.add_argument("--results", required=True, help="a study folder, or a folder of study folders")
    p.add_argument("--out", required=True, help="folder for the figures")
    declare_paths(p, inputs=("results",), outputs={"out": "dir"})
    p.set_defaults(func=run_figures_cmd)


def _study_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=f"{help_text}.\n\n" + (__doc__ or ""),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("models and data")
    g.add_argument("--checkpoint", required=True, help="diffusion model checkpoint (kind 'diffusion')")
    g.add_argument("--surrogate", required=True, help="surrogate DOS model checkpoint (kind 'surrogate')")
    g.add_argument("--store", help="dataset store (.npz) holding the target crystal (and the template)")
    g.add_argument("--target", default=DEFAULT_TARGET[name], choices=("ni-au3ni", "ir-iro2"),
                   help=f"target site DOS (default {DEFAULT_TARGET[name]})")
    g.add_argument("--target-structure", help="use this structure_id of the store (or MP id with --mp) as the "
                   "target crystal instead of the formula + space-group rule")
    g.add_argument("--mp", action="store_true", help="take the target from the Materials Project (network, MP_API_KEY)")
    g = p.add_argument_group("sampling")
    add_sampler_options(g)
    g.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...; auto = cuda when available)")
    g.add_argument("--any-element", action="store_true",
                   help="let generated atoms be any element the model knows (default: only the elements "
                        "present in --store, which the force-field references and GPAW cover)")
    if name not in ("screen", "window-sweep"):
        g.add_argument("--mlff", help=argparse.SUPPRESS)  # accepted for a uniform workflow rule; unused
    p.add_argument("--out", required=True, help="output folder (replaced atomically)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    declare_paths(p, inputs=("checkpoint", "surrogate", "store", "template"),
                  outputs={"out": "dir", "refs_cache": "file", "work_dir": "dir"})
    return p


def _mlff_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("force field")
    g.add_argument("--mlff", default="sevenn", help="MLFF for relaxation and E_f (sevenn, chgnet, orb)")
    g.add_argument("--mlff-device", default="cpu")
    g.add_argument("--workers", type=positive_int, default=1, help="relaxation processes (batched: torch threads)")
    g.add_argument("--relaxer", choices=("ase", "batched"), default="ase",
                   help="ase: one crystal at a time (default); batched: many at once with torch-sim")
    g.add_argument("--fmax", type=positive, default=DEFAULT_FMAX, help="relaxation force threshold (eV/Å)")
    g.add_argument("--relax-steps", type=non_negative_int, default=DEFAULT_RELAX_STEPS, help="maximum FIRE steps")
    g.add_argument("--refs-cache", help="elemental-reference cache file (default: per-user cache)")
    g.add_argument("--work-dir", help="resumable intermediate files (default: OUT.work)")


# ---------------------------------------------------------------------------------------------
def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    return {"sampler": sampler_options(args, allowed_types=_allowed_types(args)), "device": _device(args),
            "progress": not args.quiet}


def _allowed_types(args: argparse.Namespace) -> tuple[int, ...] | None:
    """The elements of ``--store`` (None with ``--any-element`` or without a store)."""
    if args.any_element or not args.store:
        return None
    import numpy as np

    from dosmatgen.data.store import DOSStore

    return tuple(int(z) for z in np.unique(DOSStore(args.store).all_atomic_numbers()))


def _mlff(args: argparse.Namespace) -> dict[str, Any]:
    return {"mlff": args.mlff, "mlff_workers": args.workers, "mlff_device": args.mlff_device,
            "relaxer": args.relaxer, "fmax": args.fmax,
            "relax_steps": args.relax_steps, "refs_cache": args.refs_cache, "work_dir": args.work_dir}


def _target(args: argparse.Namespace):
    from dosmatgen.studies.targets import load_target

    return load_target(args.target, store=args.store, structure_id=args.target_structure, use_mp=args.mp)


def _models(args: argparse.Namespace):
    from dosmatgen.studies.setup import load_study_models

    return load_study_models(args.checkpoint, args.surrogate, device=_device(args))


def _device(args: argparse.Namespace) -> str:
    """``--device`` with ``auto`` resolved (a missing CUDA is a one-line error, not a traceback)."""
    from dosmatgen.device import resolve_device

    return str(resolve_device(args.device))


def _report(out: str, results: dict[str, Any]) -> int:
    print(f"wrote {Path(out) / 'summary.md'}")
    for note in results.get("notes", []) or []:
        print(f"  {note}")
    return 0


def _locked(run: Any) -> Any:
    """``run`` holding the lock of ``--out``: a second study on the same folder stops naming the first."""

    def locked(args: argparse.Namespace) -> int:
        from dosmatgen.io import output_lock

        with output_lock(args.out, "--out"):
            return run(args)

    return locked


def run_masked_cmd(args: argparse.Namespace) -> int:
    from dosmatgen.studies.masked import MaskedConfig, run_masked

    cfg = MaskedConfig(n_atoms=tuple(args.natoms), n_candidates=args.n, cond_atoms=tuple(args.cond_atoms),
                       **_sampling(args))
    cfg.check()
    target = _target(args)
    res = run_masked(_models(args), target, cfg, args.out)
    return _report(args.out, res)


def run_template_cmd(args: argparse.Namespace) -> int:
    from dosmatgen.data.store import load_records
    from dosmatgen.studies.template import TemplateConfig, load_template, run_template

    cfg = TemplateConfig(t0s=tuple(args.t0), n_candidates=args.n, template=args.template,
                         cond_atoms=None if args.cond_atoms is None else tuple(args.cond_atoms),
                         template_size=args.template_size, match_timeout_s=args.match_timeout, **_sampling(args))
    cfg.check()
    if args.template is not None and not Path(args.template).exists() and args.store is None:
        raise ConfigError(f"template {args.template!r} does not exist (and no --store to look it up in)")
    records = load_records(args.store) if args.store else None
    target = _target(args)
    load_template(cfg.template, records, target.element, cfg.template_size)  # fail early on a bad template
    res = run_template(_models(args), target, cfg, args.out, store_records=records)
    return _report(args.out, res)


def run_fixed_type_cmd(args: argparse.Namespace) -> int:
    from dosmatgen.studies.fixed_type import FixedTypeConfig, resolve_elements, run_fixed_type

    cfg = FixedTypeConfig(elements=tuple(args.elements), n_atoms=tuple(args.natoms), n_candidates=args.n,
                          **_sampling(args))
    cfg.check()
    resolve_elements(cfg.elements, 100)  # unknown symbols fail before the checkpoints are read
    target = _target(args)
    res = run_fixed_type(_models(args), target, cfg, args.out)
    return _report(args.out, res)


def run_screen_cmd(args: argparse.Namespace) -> int:
    from dosmatgen.studies.screening import ScreenConfig, run_screening

    cfg = ScreenConfig(n_atoms=tuple(args.natoms), n_per_size=args.n_per_natoms, ef_threshold=args.threshold,
                       fallback_pool=args.fallback_pool, top_k=args.top_k, dft=args.dft,
                       dft_timeout_s=args.dft_timeout, dft_workers=args.dft_workers,
                       dft_fallback_basis=None if args.dft_fallback_basis.lower() == "none" else args.dft_fallback_basis,
                       dft_max_length=args.dft_max_length, dft_max_volume_per_atom=args.dft_max_volume_per_atom,
                       **_mlff(args),
                       **_sampling(args))
    cfg.check()
    target = _target(args)
    res = run_screening(_models(args), target, cfg, args.out)
    return _report(args.out, res)


def run_window_cmd(args: argparse.Namespace) -> int:
    from dosmatgen.studies.window import WindowConfig, parse_window, run_window_sweep

    cfg = WindowConfig(windows=tuple(parse_window(w) for w in args.windows), omegas=tuple(args.omegas),
                       score_window=None if args.score_window is None else parse_window(args.score_window),
                       n_atoms=tuple(args.natoms), n_candidates=args.n, formation=not args.no_formation,
                       ef_threshold=args.threshold, **_mlff(args), **_sampling(args))
    cfg.check()
    target = _target(args)
    res = run_window_sweep(_models(args), target, cfg, args.out)
    return _report(args.out, res)


def run_figures_cmd(args: argparse.Namespace) -> int:
    from dosmatgen.plots.studies import make_study_figures

    written = make_study_figures(args.results, args.out)
    for stem, paths in sorted(written.items()):
        if stem.startswith("skipped:"):
            print(f"{stem[8:]}: skipped ({paths[0]})", file=sys.stderr)
        else:
            print(f"{stem}: " + ", ".join(str(p) for p in paths))
    return 0
