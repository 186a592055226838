"""``dosmatgen evaluate ...``: paper §3.1 -- regenerate the test split, score it, MLFF formation
energies, Tables 1-2 beside the paper's numbers, and the paper's claims checked on ours.

Sub-commands::

    regenerate   one crystal per test structure from its per-atom DOS (CFG or classifier guidance,
                 or the unconditional model as a baseline; from the prior at T = 1000 or from the
                 test structure noised to t0)
    score        Table 1 MAEs (surrogate) + Table 2 match rates + element accuracy +
                 validity/uniqueness/novelty -> JSON
    lookup       baseline without a model: each test atom takes the element of the training atom
                 with the nearest standardised DOS (L1) -> element accuracy + composition match JSON
    formation    unrelaxed and relaxed formation energies with an MLFF (generated or test structures)
    tables       Table 1, Table 2 and a formation summary (csv + md) with the paper's numbers beside
    claims       the paper's orderings (CFG beats classifier, trends with T) checked: PASS/FAIL
    dft-judge    GPAW site DOS of a fixed sample of a generated set: Table 1's MAE judged by DFT
                 beside the surrogate's, on the same crystals (issue 37) -> JSON
    dft-table    the judged sets as one table (+ the MAE claims under both judges)

The surrogate is trained with ``dosmatgen train --kind surrogate``. File formats are documented in
dosmatgen.generate.generated (generated .npz), .score and .lookup (metrics JSON), .formation
(formation JSON) and .tables / .claims (results folder).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from dosmatgen.commands.arguments import (add_sampler_options, declare_paths, integer, non_negative_int, positive,
                                          positive_int, sampler_options)
from dosmatgen.data.split import part_records
from dosmatgen.errors import ConfigError, DataError
from dosmatgen.evaluate.mlff import DEFAULT_FMAX, DEFAULT_RELAX_STEPS, MLFF_PACKAGES, canonical_mlff


def _device(name: str) -> Any:
    from dosmatgen.device import resolve_device

    return resolve_device(name)


def _command_line() -> str:
    return "dosmatgen " + " ".join(shlex.quote(a) for a in sys.argv[1:])


# ----------------------------------------------------------------------------------------------
def _cmd_regenerate(args: argparse.Namespace) -> int:
    from dosmatgen.checkpoint import code_version, load_model
    from dosmatgen.generate.runner import check_standardisers, regenerate
    from dosmatgen.generate.writer import write_cifs

    options = sampler_options(args)
    device = _device(args.device)
    diffusion, std, meta = load_model(args.checkpoint, device)
    if meta["kind"] != "diffusion":
        raise ConfigError(f"--checkpoint {args.checkpoint} holds a {meta['kind']!r} model, not a diffusion model")
    if std is None:
        raise ConfigError(f"--checkpoint {args.checkpoint} has no DOS standardiser; cannot condition on raw DOS")
    regressor = None
    if options.guidance == "classifier":
        if not args.regressor:
            raise ConfigError("--guidance classifier needs --regressor CHECKPOINT (dosmatgen train --kind regressor)")
        regressor, rstd, rmeta = load_model(args.regressor, device)
        if rmeta["kind"] != "regressor":
            raise ConfigError(f"--regressor {args.regressor} holds a {rmeta['kind']!r} model, not a regressor")
        check_standardisers(std, rstd, f"--regressor {args.regressor}")
    elif args.regressor:
        raise ConfigError("--regressor is only used with --guidance classifier")
    if options.omega_geometry is not None and options.guidance != "cfg":
        raise ConfigError("--omega-geometry is only used with --guidance cfg")
    records = part_records(args.store, args.split, args.subset, args.limit)
    T = int(diffusion.timesteps)
    t0 = int(args.t0)
    if not 1 <= t0 <= T:
        raise ConfigError(f"--t0 must be in 1..{T} (the model's T), got {t0}")
    meta_out = {"checkpoint": str(args.checkpoint), "regressor": args.regressor, "store": str(args.store),
                "split": str(args.split), "subset": args.subset, "limit": args.limit,
                "command": _command_line(), "code": code_version(), "checkpoint_epoch": meta.get("epoch")}
    gen = regenerate(diffusion, std, records, args.out, options, t0=t0, regressor=regressor, meta=meta_out,
                     progress=not args.no_progress)
    if args.cif_dir:
        n = write_cifs(gen, args.cif_dir)
        print(f"wrote {n} CIF files to {args.cif_dir}")
    rate = gen.meta.get("structures_per_second")
    steps = gen.meta["steps"] or gen.meta["t0"]
    print(f"regenerated {len(gen)} structures ({options.guidance}, T={gen.meta['t0']}, {steps} steps) -> {args.out}"
          + (f"; {rate:.3g} structures/s" if rate else ""))
    return 0


def _surrogate_and_references(args: argparse.Namespace, gen: Any, device: Any) -> tuple[Any, Any, Any, dict]:
    """``--surrogate`` (checked to be a surrogate with a standardiser), the ``--store`` and the test
    records the generated set ``gen`` was conditioned on (every one must be in the store)."""
    from dosmatgen.checkpoint import load_model
    from dosmatgen.data.store import DOSStore

    surrogate, sstd, smeta = load_model(args.surrogate, device)
    if smeta["kind"] != "surrogate":
        raise ConfigError(f"--surrogate {args.surrogate} holds a {smeta['kind']!r} model, not a surrogate")
    if sstd is None:
        raise ConfigError(f"--surrogate {args.surrogate} has no DOS standardiser")
    st = DOSStore(args.store)
    absent = [sid for sid in gen.source_ids if sid not in st]
    if absent:
        raise DataError(f"{len(absent)} generated structure(s) come from ids missing in {args.store}, e.g. {absent[0]!r}")
    return surrogate, sstd, st, {r.structure_id: r for r in st.records(list(dict.fromkeys(gen.source_ids)))}


def _cmd_score(args: argparse.Namespace) -> int:
    from dosmatgen.data.split import load_split
    from dosmatgen.generate.generated import load_generated
    from dosmatgen.evaluate.score import score_generated, write_metrics

    if args.relaxed_match is not None:
        args.relaxed_match = canonical_mlff(args.relaxed_match)  # an unknown force field: refused before any work
    gen = load_generated(args.generated)
    if args.limit is not None and args.limit < len(gen):
        gen = gen.subset(range(args.limit))
    device = _device(args.device)
    surrogate, sstd, st, refs = _surrogate_and_references(args, gen, device)
    training = None
    if not args.no_novelty:
        train_ids = _train_ids(args.train_ids or args.split)
        missing = [i for i in train_ids if i not in st]
        if missing:
            raise DataError(f"{len(missing)} training id(s) missing from {args.store}, e.g. {missing[0]!r}")
        training = [r.to_structure() for r in st.records(train_ids)]
    else:
        load_split(args.split)  # still check that the split file is readable
    out = Path(args.out)
    result = score_generated(gen, refs, surrogate, sstd, training=training, match_timeout_s=args.match_timeout,
                             workers=args.workers, batch_size=args.batch_size, device=str(device),
                             progress=not args.no_progress, generated_path=str(args.generated),
                             surrogate_path=str(args.surrogate),
                             per_structure_csv=out.with_name(out.stem + ".per_structure.csv"),
                             relax_mlff=args.relaxed_match)
    result["command"] = _command_line()
    write_metrics(out, result)
    m = result["metrics"]
    summary = ", ".join(f"{k} {m[k]['value']:.4g}" for k in ("mae_gen_y", "mae_gen_yhat", "mae_yhat_y",
                                                             "structure_match_rate", "structure_match_rate_relaxed",
                                                             "composition_match_rate",
                                                             "element_accuracy")
                        if m.get(k, {}).get("value") is not None)
    print(f"scored {result['n_structures']} structures ({result['guidance']}, T={result['t0']}): {summary} -> {out}")
    return 0


def _cmd_lookup(args: argparse.Namespace) -> int:
    from dosmatgen.checkpoint import code_version
    from dosmatgen.data.split import load_split
    from dosmatgen.data.standardise import DOSStandardiser
    from dosmatgen.data.store import DOSStore
    from dosmatgen.evaluate.lookup import score_lookup
    from dosmatgen.evaluate.score import write_metrics

    for flag, value in (("--limit", args.limit), ("--chunk-size", args.chunk_size)):
        if value is not None and value < 1:  # a returned exit code, as this command's callers expect
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    device = _device(args.device)
    std = DOSStandardiser.load(args.standardiser)
    test = part_records(args.store, args.split, args.subset, args.limit)
    train_ids = load_split(args.split)["train"]
    st = DOSStore(args.store)
    missing = [i for i in train_ids if i not in st]
    if missing:
        raise DataError(f"{len(missing)} training id(s) missing from {args.store}, e.g. {missing[0]!r}")
    out = Path(args.out)
    inputs = {"store": str(args.store), "split": str(args.split), "standardiser": str(args.standardiser),
              "subset": args.subset, "limit": args.limit, "device": str(device), "code": code_version()}
    result = score_lookup(test, st.records(train_ids), std, device=str(device), reference_chunk=args.chunk_size,
                          inputs=inputs, per_structure_csv=out.with_name(out.stem + ".per_structure.csv"))
    result["command"] = _command_line()
    write_metrics(out, result)
    m, info = result["metrics"], result["lookup"]
    print(f"looked up {result['n_structures']} {args.subset} structures ({m['element_accuracy']['n_total']} atoms) "
          f"among {info['n_train_atoms']} training atoms: element_accuracy {m['element_accuracy']['value']:.4g} %, "
          f"composition_match_rate {m['composition_match_rate']['value']:.4g} % -> {out}")
    return 0


def _train_ids(path: str) -> list[str]:
    """Training ids from a split JSON (its ``train`` part) or a text file with one id per line."""
    import json

    p = Path(path)
    if not p.exists():
        raise DataError(f"training-id file {p} does not exist")
    text = p.read_text()
    try:
        obj = json.loads(text)
    except ValueError:
        return [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(obj, dict) and "train" in obj:
        return [str(i) for i in obj["train"]]
    if isinstance(obj, list):
        return [str(i) for i in obj]
    raise DataError(f"{p}: expected a split JSON with a 'train' list, a JSON list or one id per line")


def _cmd_formation(args: argparse.Namespace) -> int:
    import numpy as np

    from dosmatgen.evaluate import formation as F
    from dosmatgen.io import output_lock

    if bool(args.generated) == bool(args.store):
        raise ConfigError("give exactly one of --generated FILE or --store STORE --split SPLIT")
    items = []
    if args.generated:
        from dosmatgen.generate.generated import load_generated

        gen = load_generated(args.generated)
        n = len(gen) if args.limit is None else min(args.limit, len(gen))
        for i in range(n):
            z, x, lat = gen.item(i)
            items.append(F.FormationItem(f"{i:06d}", gen.source_ids[i], np.asarray(z), np.asarray(x), np.asarray(lat)))
        source = str(args.generated)
    else:
        if not args.split:
            raise ConfigError("--store needs --split (and --subset)")
        for r in part_records(args.store, args.split, args.subset, args.limit):
            items.append(F.FormationItem(r.structure_id, r.structure_id, r.atomic_numbers, r.frac_coords, r.lattice))
        source = f"{args.store}:{args.subset}"
    with output_lock(args.out, "--out"):  # a second run on the same --out stops instead of mixing parts
        res = F.compute_formation_energies(items, args.out, mlff=args.mlff, workers=args.workers, fmax=args.fmax,
                                           steps=args.steps, refs_cache=args.refs_cache, chunk_size=args.chunk_size,
                                           min_volume_per_atom=args.min_volume_per_atom, device=args.device,
                                           input_name=source, progress=not args.no_progress, relaxer=args.relaxer,
                                           max_atoms=args.max_atoms)
    ok = [r["ef_relaxed"] for r in res["rows"] if r["ef_relaxed"] is not None]
    med = f"; median relaxed E_f {float(np.median(ok)):.3f} eV/atom" if ok else ""
    print(f"formation energies of {res['n']} structures with {res['mlff']}: {res['status_counts']}{med} -> {args.out}")
    return 0


def _cmd_tables(args: argparse.Namespace) -> int:
    from dosmatgen.evaluate.tables import write_tables

    written = write_tables(args.metrics_dir, args.out, provenance=args.provenance, formation=args.formation or ())
    for name in ("table1_dos_mae", "table2_match_rates", "formation_energies"):
        md = Path(args.out) / f"{name}.md"
        if name in written and md.exists():
            print(md.read_text())
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


def _cmd_claims(args: argparse.Namespace) -> int:
    from dosmatgen.evaluate.claims import write_claims

    claims = write_claims(args.results)
    for c in claims:
        print(c.line())
    print(f"wrote {Path(args.results) / 'claims.md'}")
    return 0


def _cmd_dft_judge(args: argparse.Namespace) -> int:
    from dosmatgen.dos.gpaw_engine import GPAWSiteDOSEngine
    from dosmatgen.evaluate.dft_judge import judge_generated
    from dosmatgen.generate.generated import load_generated

    ok, why = GPAWSiteDOSEngine.available()
    if not ok:
        raise ConfigError(f"GPAW is not available ({why}): apt-get install gpaw gpaw-data")
    gen = load_generated(args.generated)
    surrogate, sstd, _, refs = _surrogate_and_references(args, gen, _device("cpu"))
    cache = Path(args.cache or f"{args.out}.labels")
    fallback = None if args.fallback_basis == "none" else args.fallback_basis
    engine = GPAWSiteDOSEngine(timeout_s=args.timeout, fallback_basis=fallback)
    result = judge_generated(gen, refs, surrogate, sstd, engine, args.n, cache,
                             workers=args.workers, report=lambda line: print(line, flush=True))
    result.update({"generated": str(args.generated), "command": _command_line()})
    from dosmatgen.io import atomic_save_json

    atomic_save_json(args.out, result)
    s = result["summary"]
    print(f"judged {s['n_judged']} of {s['n_requested']} ({result['guidance']}, T={result['t0']}): surrogate "
          f"{s['mae_surrogate_target']}, DFT {s['mae_dft_target']}, failed {s['failures']} -> {args.out}")
    return 0


def _cmd_dft_table(args: argparse.Namespace) -> int:
    from dosmatgen.evaluate.dft_judge import write_judged_tables

    write_judged_tables(args.judged, args.out)
    print((Path(args.out) / "table1_dft_judge.md").read_text())
    print((Path(args.out) / "claims_by_judge.md").read_text())
    return 0


# ----------------------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="regenerate the test split, score it, formation energies, tables",
                              description="Paper §3.1: regenerate the test split, score it, MLFF formation "
                                          "energies, Tables 1-2 beside the paper's numbers, and the paper's "
                                          "claims checked on ours.",
                              epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="evaluate_command", metavar="EVALUATE_COMMAND")
    sub.required = True

    r = sub.add_parser("regenerate", help="one crystal per test structure, conditioned on its per-atom DOS",
                       description="Sample one crystal per structure of a split part with its atom count and "
                                   "per-atom DOS (paper §3.1). Chunks of --batch-size are written to "
                                   "OUT.chunks/ as they finish; rerunning the same command resumes.",
                       epilog="example: dosmatgen evaluate regenerate --checkpoint runs/diffusion/best.pt "
                              "--store data.npz --split split.json --guidance cfg --t0 1000 --steps 1000 "
                              "--out work/generated/cfg_T1000.npz")
    r.add_argument("--checkpoint", required=True, help="diffusion checkpoint (dosmatgen train --kind diffusion)")
    r.add_argument("--store", required=True, help="dataset store (.npz) holding the split's structures and DOS")
    r.add_argument("--split", required=True, help="split JSON with train/val/test id lists")
    r.add_argument("--subset", default="test", choices=("train", "val", "test"), help="split part (default test)")
    r.add_argument("--regressor", default=None, help="time-dependent regressor checkpoint (classifier guidance)")
    r.add_argument("--t0", type=positive_int, default=1000,
                   help="starting timestep: the model's T (1000) samples from the prior, smaller values start from "
                        "the test structure noised to t0 (paper: 200, 500, 1000)")
    add_sampler_options(r.add_argument_group("sampling (one flag per SamplerOptions field)"))
    r.add_argument("--limit", type=positive_int, default=None, help="only the first N structures of the subset")
    r.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    r.add_argument("--out", required=True, help="generated-structure file (.npz)")
    r.add_argument("--cif-dir", default=None, help="also write one CIF per generated crystal here")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    declare_paths(r, inputs=("checkpoint", "store", "split", "regressor"), outputs={"out": "file", "cif_dir": "dir"})
    r.set_defaults(func=_cmd_regenerate)

    s = sub.add_parser("score", help="Table 1 MAEs and Table 2 match rates of a generated set -> metrics JSON",
                       description="Score a generated set against the test structures that conditioned it: "
                                   "MAE(ŷ_gen, y), MAE(ŷ_gen, ŷ), MAE(ŷ, y) with the surrogate (states/eV/site), "
                                   "structure/composition match rates, validity, uniqueness, novelty. Writes OUT "
                                   "and OUT-stem.per_structure.csv.")
    s.add_argument("--generated", required=True, help="generated-structure file from `evaluate regenerate`")
    s.add_argument("--surrogate", required=True, help="surrogate checkpoint (dosmatgen train --kind surrogate)")
    s.add_argument("--store", required=True, help="dataset store with the test structures and their DOS")
    s.add_argument("--split", required=True, help="split JSON; its train part is the novelty reference")
    s.add_argument("--train-ids", default=None,
                   help="novelty reference ids instead of the split's train part (split JSON, JSON list or text)")
    s.add_argument("--no-novelty", action="store_true", help="skip novelty (matching against the training set)")
    s.add_argument("--limit", type=positive_int, default=None, help="only the first N generated structures")
    s.add_argument("--match-timeout", type=positive, default=10.0, help="seconds per StructureMatcher pair (default 10)")
    s.add_argument("--workers", type=positive_int, default=1, help="processes for structure matching (default 1)")
    s.add_argument("--relaxed-match", default=None, metavar="MLFF",
                   help="also the structure match after relaxing each composition-matched generated crystal with "
                        f"this force field ({', '.join(MLFF_PACKAGES)}; FIRE + cell filter, fmax {DEFAULT_FMAX} eV/Å, "
                        f"{DEFAULT_RELAX_STEPS} steps): "
                        "structure_match_rate_relaxed. Not the paper's Table 2, which matches unrelaxed; default: off")
    s.add_argument("--batch-size", type=positive_int, default=128, help="surrogate batch size (default 128)")
    s.add_argument("--device", default="auto", help="surrogate device: cpu, cuda or auto (default)")
    s.add_argument("--out", required=True, help="metrics JSON")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    declare_paths(s, inputs=("generated", "surrogate", "store", "split", "train_ids"), outputs={"out": "file"})
    s.set_defaults(func=_cmd_score)

    k = sub.add_parser("lookup", help="baseline: each test atom takes the element of the nearest training DOS",
                       description="DOS-lookup baseline (no model): each atom of the first --limit structures of "
                                   "--subset takes the element of the training atom whose standardised site DOS "
                                   "is nearest in L1. Writes element accuracy and composition match as a metrics "
                                   "JSON (guidance 'lookup', for `evaluate tables`) and "
                                   "OUT-stem.per_structure.csv.",
                       epilog="example: dosmatgen evaluate lookup --store resources/builtin_dos.npz --split "
                              "work/demo/data/split.json --standardiser work/demo/data/standardiser.json "
                              "--subset test --limit 100 --out work/demo/metrics/lookup.json")
    k.add_argument("--store", required=True, help="dataset store (.npz) with the split's structures and DOS")
    k.add_argument("--split", required=True, help="split JSON; its train part is looked up")
    k.add_argument("--standardiser", required=True,
                   help="DOS standardiser JSON the diffusion model was trained with (dosmatgen data split)")
    k.add_argument("--subset", default="test", choices=("val", "test"), help="split part to score (default test)")
    k.add_argument("--limit", type=integer, default=None, help="only the first N structures (as evaluate regenerate)")
    k.add_argument("--chunk-size", type=integer, default=8192,
                   help="training atoms per distance block (memory ~ 4 x 1024 x this bytes; default 8192)")
    k.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    k.add_argument("--out", required=True, help="metrics JSON")
    declare_paths(k, inputs=("store", "split", "standardiser"), outputs={"out": "file"})
    k.set_defaults(func=_cmd_lookup)

    f = sub.add_parser("formation", help="MLFF formation energies (unrelaxed and relaxed) per atom",
                       description="Relax structures with an MLFF (FIRE + FrechetCellFilter) and compute formation "
                                   "energies per atom from elemental references relaxed with the same MLFF (ASE "
                                   "dcdft crystals; MP energies as recorded fallback). Resumable: chunks in OUT.parts/.",
                       epilog="example: dosmatgen evaluate formation --generated work/generated/cfg_T1000.npz "
                              "--mlff sevenn --workers 2 --out work/formation/cfg_T1000.json")
    f.add_argument("--generated", default=None, help="generated-structure file (from `evaluate regenerate`)")
    f.add_argument("--store", default=None, help="dataset store (ground-truth structures; with --split)")
    f.add_argument("--split", default=None, help="split JSON (with --store)")
    f.add_argument("--subset", default="test", choices=("train", "val", "test"), help="split part (default test)")
    f.add_argument("--mlff", default="sevenn",
                   help="sevenn (= 7net-0, default), chgnet, orb (= orb-v2, needs orb-models) or emt (toy)")
    f.add_argument("--relaxer", choices=("ase", "batched"), default="ase",
                   help="ase: one structure at a time (the reference, default); batched: many at once with "
                        "torch-sim (sevenn, orb), same FIRE + Frechet cell filter")
    f.add_argument("--max-atoms", type=positive_int, default=None,
                   help="batched: atoms per batch (default: sized from free memory)")
    f.add_argument("--workers", type=positive_int, default=1,
                   help="ase: processes, one torch thread each; batched: torch threads (default 1)")
    f.add_argument("--steps", "--max-steps", dest="steps", type=non_negative_int, default=DEFAULT_RELAX_STEPS,
                   help=f"FIRE steps at most (default {DEFAULT_RELAX_STEPS})")
    f.add_argument("--fmax", type=positive, default=DEFAULT_FMAX,
                   help=f"force threshold, eV/Å (default {DEFAULT_FMAX})")
    f.add_argument("--limit", type=positive_int, default=None, help="only the first N structures")
    f.add_argument("--refs-cache", default=None,
                   help="elemental-reference cache JSON (default ~/.cache/dosmatgen/elemental_refs_<mlff>.json)")
    f.add_argument("--chunk-size", type=positive_int, default=None,
                   help="structures per resumable chunk (default 64; 512 with --relaxer batched)")
    f.add_argument("--min-volume-per-atom", type=positive, default=1.0,
                   help="skip structures denser than this, Å^3/atom (default 1.0)")
    f.add_argument("--device", default="cpu", help="MLFF device (default cpu)")
    f.add_argument("--out", required=True, help="formation JSON (a CSV with the same rows is written beside it)")
    f.add_argument("--no-progress", action="store_true", help="no progress bars")
    declare_paths(f, inputs=("generated", "store", "split"), outputs={"out": "file", "refs_cache": "file"})
    f.set_defaults(func=_cmd_formation)

    t = sub.add_parser("tables", help="Tables 1 and 2 (csv + md) with the paper's numbers side by side",
                       description="Collect the metrics JSONs of a folder and write table1_dos_mae, "
                                   "table2_match_rates (and formation_energies) as .csv and .md, plus provenance.json.")
    t.add_argument("--metrics-dir", required=True, help="folder of metrics JSONs from `evaluate score`")
    t.add_argument("--formation", nargs="*", default=None,
                   help="formation JSONs named <guidance>_T<T>.json / ground_truth.json")
    t.add_argument("--provenance", default=None, help="provenance JSON of the run (copied into --out)")
    t.add_argument("--out", required=True, help="results folder")
    declare_paths(t, inputs=("metrics_dir", "formation", "provenance"), outputs={"out": "dir"})
    t.set_defaults(func=_cmd_tables)

    c = sub.add_parser("claims", help="check the paper's §3.1 orderings on our tables (PASS/FAIL)",
                       description="Evaluate the paper's qualitative claims on the tables in --results and write "
                                   "claims.md / claims.json there. Exit code 0 whatever the verdicts.")
    c.add_argument("--results", required=True, help="results folder written by `evaluate tables`")
    declare_paths(c, inputs=("results",))
    c.set_defaults(func=_cmd_claims)

    j = sub.add_parser("dft-judge", help="Table 1 judged by DFT: GPAW site DOS of a fixed sample of a generated set",
                       description="Label the first --n valid crystals of a generated set (test order, shared evenly "
                                   "between the test split's sources) with the GPAW site-DOS engine, unrelaxed, and "
                                   "report MAE(DOS_DFT_gen, y) beside the surrogate's MAE(ŷ_gen, y) on the same "
                                   "crystals and the surrogate-vs-DFT error. Failed jobs are counted by kind. One "
                                   "label per crystal is cached in --cache (default OUT.labels/): rerun to resume.",
                       epilog="example: dosmatgen evaluate dft-judge --generated work/demo/generated/cfg_T1000.npz "
                              "--surrogate work/demo/models/surrogate.pt --store resources/builtin_dos.npz --n 24 "
                              "--workers 2 --out work/demo/dft_judge/cfg_T1000.json")
    j.add_argument("--generated", required=True, help="generated-structure file from `evaluate regenerate`")
    j.add_argument("--surrogate", required=True, help="the Table 1 surrogate checkpoint")
    j.add_argument("--store", required=True, help="dataset store with the test structures and their DOS")
    j.add_argument("--n", type=positive_int, default=24, help="crystals to label (default 24)")
    j.add_argument("--timeout", type=positive, default=600.0,
                   help="CPU seconds one GPAW job may use; longer counts as failed (timeout) (default 600)")
    j.add_argument("--fallback-basis", default="szp(dzp)",
                   help="LCAO basis tried once when dzp is over-complete for a cell (atoms close together, as in "
                        "many generated crystals); counted in the table; 'none': such cells fail (default szp(dzp))")
    j.add_argument("--workers", type=positive_int, default=1, help="GPAW jobs at once, one core each (default 1)")
    j.add_argument("--cache", default=None, help="folder of per-crystal labels (default OUT.labels)")
    j.add_argument("--out", required=True, help="judgement JSON")
    declare_paths(j, inputs=("generated", "surrogate", "store"), outputs={"out": "file", "cache": "dir"})
    j.set_defaults(func=_cmd_dft_judge)

    d = sub.add_parser("dft-table", help="the DFT-judged sets as one table, with the MAE claims under both judges",
                       description="Write table1_dft_judge.csv|md and claims_by_judge.md|json in --out from the "
                                   "JSONs of `evaluate dft-judge`.")
    d.add_argument("--judged", nargs="+", required=True, help="judgement JSONs")
    d.add_argument("--out", required=True, help="results folder")
    declare_paths(d, inputs=("judged",), outputs={"out": "dir"})
    d.set_defaults(func=_cmd_dft_table)
