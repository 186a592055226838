"""``dosmatgen data ...``: build, download, merge, split, inspect and convert datasets (docs/data.md).

Sub-commands::

    merge           merge shards (built-in or MP) into one store
    download-mp     download the Materials Project DOS set (needs MP_API_KEY and mp-api)
    split           0.6/0.2/0.2 train/val/test id lists (+ standardiser fitted on train)
    info            counts, elements, sizes, sources; optional figures
    target          one site's DOS as a target JSON (from a store or from MP)
    import-json     reference-code JSON list -> store
    export-json     store -> reference-code JSON list

The built-in dataset's builder (its shards and ledgers) is a developer script outside the package:
``python -m dev_scripts.builtin`` (dev_scripts/README.md).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from dosmatgen.commands.arguments import declare_paths, finite, non_negative, non_negative_int, positive_int
from dosmatgen.data.split import DEFAULT_FRACTIONS, SOURCES
from dosmatgen.errors import ConfigError, DataError
from dosmatgen.io import check_writable

DEFAULT_BUILTIN_SHARDS = "resources/builtin"
DEFAULT_BUILTIN_STORE = "resources/builtin_dos.npz"


def _mp_id(text: str) -> str:
    """A Materials Project material id (``mp-149``, ``mvc-11``), checked before any network call."""
    if not re.fullmatch(r"(mp|mvc)-\d+", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a Materials Project id (like mp-149)")
    return text


def _site_spec(text: str) -> tuple[str, str]:
    sid, sep, site = text.rpartition(":")
    if not sep or not sid or not site:
        raise argparse.ArgumentTypeError(f"expected STRUCTURE_ID:SITE (site number or element), got {text!r}")
    return sid, site


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data", help="build, download, split and inspect datasets",
        description=__doc__.split("\n\n", 1)[0] + " Every store is one .npz file (see dosmatgen.data.store).",
    )
    sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    sub.required = True

    # merge ---------------------------------------------------------------------------------
    m = sub.add_parser("merge", help="merge shards (built-in or MP) into one store",
                       description="Merge the shards written by the built-in builder (python -m "
                                   "dev_scripts.builtin build) or download-mp into one .npz store (atomic write).")
    m.add_argument("--source", choices=["builtin", "mp"], default="builtin",
                   help="which builder wrote the shards (default: builtin)")
    m.add_argument("--shards", default=None, metavar="DIR",
                   help=f"shard folder (default: {DEFAULT_BUILTIN_SHARDS} for builtin, data/mp for mp)")
    m.add_argument("--out", default=None, metavar="STORE",
                   help=f"merged store (default: {DEFAULT_BUILTIN_STORE} for builtin, data/mp_dos.npz for mp)")
    declare_paths(m, inputs=("shards",), outputs={"out": "file"})
    m.set_defaults(func=_cmd_merge)

    # download-mp ---------------------------------------------------------------------------
    d = sub.add_parser(
        "download-mp", help="download the Materials Project site-DOS set (needs MP_API_KEY, mp-api)",
        description="Download every Materials Project material with a DOS, convert each CompleteDos to "
                    "site DOS (s+p+d, spins summed, 2001-point grid only, Gaussian sigma 7 points, "
                    "400 points in [-10, 10] eV about E_F) and write resumable shards. Rerun the same "
                    "command to resume. Needs the API key in MP_API_KEY (or --api-key) and "
                    "`pip install 'dosmatgen[mp]'` (mp-api 0.46.x). Materials that fail only temporarily "
                    "(S3/Delta read errors, timeouts, HTTP 5xx) stay pending and the command exits 2 after "
                    "writing everything else; rerun to fetch them.",
    )
    d.add_argument("--out", default="data/mp", metavar="DIR", help="shard folder (default: data/mp)")
    d.add_argument("--api-key", default=None, help="Materials Project API key (default: $MP_API_KEY)")
    d.add_argument("--limit", type=positive_int, default=None, help="fetch only the first N materials (by id number)")
    d.add_argument("--max-sites", type=positive_int, default=None, help="only materials with at most this many sites")
    d.add_argument("--ids", nargs="+", type=_mp_id, default=None, metavar="MP_ID", help="fetch exactly these material ids")
    d.add_argument("--batch-size", type=positive_int, default=200, help="materials per shard (default: 200)")
    d.add_argument("--min-interval", type=non_negative, default=0.2,
                   help="seconds between API calls (default: 0.2)")
    d.add_argument("--max-retries", type=non_negative_int, default=5,
                   help="retries of a failing call, exponential backoff from 2 s (default: 5)")
    d.add_argument("--required-points", type=non_negative_int, default=2001,
                   help="energy-grid length a calculation must have (default: 2001; 0 accepts any)")
    d.add_argument("--merge", default=None, metavar="STORE", help="merge the shards into this store afterwards")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    declare_paths(d, outputs={"out": "dir", "merge": "file"})
    d.set_defaults(func=_cmd_download_mp)

    # split -----------------------------------------------------------------------------------
    s = sub.add_parser(
        "split", help="seeded train/val/test split as id lists (+ DOS standardiser fitted on train)",
        description="Split a store's structure ids 0.6/0.2/0.2 (seeded; depends only on the set of ids "
                    "and the seed; stratified by source -- prototypes, mp20, mp, other, from the id prefix -- "
                    "so each source is split with the same fractions and seed) and save the id lists as JSON. "
                    "With --standardiser, also fit the per-energy-bin DOS mean/std on the training atoms and save it.",
    )
    s.add_argument("--store", required=True, help="dataset store (.npz)")
    s.add_argument("--out", required=True, help="split JSON to write")
    s.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default: 0)")
    s.add_argument("--fractions", type=finite, nargs=3, default=list(DEFAULT_FRACTIONS), metavar=("TRAIN", "VAL", "TEST"),
                   help="split fractions (default: the paper's %(default)s)")
    s.add_argument("--source-fractions", type=source_fractions, action="append", default=[],
                   metavar="SOURCE=TRAIN,VAL,TEST",
                   help=f"other fractions for one source ({', '.join(SOURCES)}), e.g. mp20=0.75,0.05,0.2 "
                        "to train on more of the real crystals; moving only its train/val boundary keeps that "
                        "source's test part. Repeatable")
    s.add_argument("--base-ids", default=None, metavar="TXT",
                   help="fix the split on these ids (one per line, # comments): only they are split, and "
                        "every other id of the store (a crystal labelled later) goes to training, so "
                        "validation and test stay as they were; all of them must be in the store")
    s.add_argument("--standardiser", default=None, metavar="JSON",
                   help="also write the DOS standardiser fitted on the training split")
    declare_paths(s, inputs=("store", "base_ids"), outputs={"out": "file", "standardiser": "file"})
    s.set_defaults(func=_cmd_split)

    # info ------------------------------------------------------------------------------------
    i = sub.add_parser(
        "info", help="counts, elements, atoms per cell, sources; optional figures",
        description="Summarise a store (or the shards of a build folder): structures, atoms, elements, atoms-per-cell histogram, provenance. "
                    "--plot-site ID:SITE --out fig.png plots one site's DOS (SITE is a number or an "
                    "element symbol); --figure hist.png draws element and size histograms.",
    )
    i.add_argument("--store", required=True,
                   help="dataset store (.npz), or a built-in build folder: then the labelled shards are counted "
                        "as they stand, without a merge (e.g. while a build runs)")
    i.add_argument("--plot-site", type=_site_spec, default=None, metavar="ID:SITE",
                   help="plot this site's DOS, e.g. builtin-L12-Au3Ni:Ni or mp-976806:3")
    i.add_argument("--out", default=None, help="figure file for --plot-site (PNG/PDF/SVG)")
    i.add_argument("--figure", default=None, help="write the element + atoms-per-cell histogram figure here")
    i.add_argument("--json", default=None, help="also write the summary as JSON")
    i.add_argument("--text", default=None, help="also write the printed summary to this text file")
    declare_paths(i, inputs=("store",), outputs={"out": "file", "figure": "file", "json": "file", "text": "file"})
    i.set_defaults(func=_cmd_info)

    # target ----------------------------------------------------------------------------------
    t = sub.add_parser(
        "target", help="one site's DOS as a target JSON (from a store or from MP)",
        description="Write one site's DOS as a JSON target for generation: {structure_id, site_index, "
                    "element, energies, dos, source}. Take it from a store (--store with --site) or from "
                    "the Materials Project (--mp, needs MP_API_KEY).",
    )
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", default=None, help="dataset store (.npz); use with --site")
    src.add_argument("--mp", type=_site_spec, default=None, metavar="MP_ID:SITE",
                     help="fetch from the Materials Project, e.g. mp-976806:Ni")
    t.add_argument("--site", type=_site_spec, default=None, metavar="ID:SITE", help="site in --store")
    t.add_argument("--api-key", default=None, help="Materials Project API key (default: $MP_API_KEY)")
    t.add_argument("--out", required=True, help="target JSON to write")
    declare_paths(t, inputs=("store",), outputs={"out": "file"})
    t.set_defaults(func=_cmd_target)

    # import / export ---------------------------------------------------------------------------
    im = sub.add_parser("import-json", help="reference-code JSON list -> store",
                        description="Read a JSON list of {structure_id, positions (Cartesian Å), cell, "
                                    "atomic_numbers, y (N x 400)} as the public DOSMatGen / MatDeepLearn "
                                    "code uses, and write a store.")
    src = im.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="reference JSON file")
    src.add_argument("--dir", help="folder with train.json, val.json and test.json (e.g. the authors' "
                                   "data/mp_dos): one store of all three, and with --split-out their split as given")
    im.add_argument("--out", required=True, help="store (.npz) to write")
    im.add_argument("--split-out", default=None, help="with --dir: split JSON to write (train/val/test = the "
                                                      "three files' structures; nothing is re-split)")
    declare_paths(im, inputs=("input", "dir"), outputs={"out": "file", "split_out": "file"})
    im.set_defaults(func=_cmd_import_json)

    ex = sub.add_parser("export-json", help="store -> reference-code JSON list",
                        description="Write a store (or one part of a split) as the reference code's JSON list.")
    ex.add_argument("--store", required=True, help="dataset store (.npz)")
    ex.add_argument("--out", required=True, help="JSON file to write")
    ex.add_argument("--split", default=None, help="split JSON; export only --part of it")
    ex.add_argument("--part", choices=["train", "val", "test"], default=None, help="split part to export")
    declare_paths(ex, inputs=("store", "split"), outputs={"out": "file"})
    ex.set_defaults(func=_cmd_export_json)


# ---- handlers -----------------------------------------------------------------------------------
def _cmd_merge(args: argparse.Namespace) -> int:
    if args.source == "builtin":
        shards, out = args.shards or DEFAULT_BUILTIN_SHARDS, args.out or DEFAULT_BUILTIN_STORE
        if not Path(shards).is_dir():
            raise DataError(f"shard folder {shards} does not exist")
        from dosmatgen.data.store import merge_shards

        result = merge_shards(shards, out, command=" ".join(["dosmatgen", *sys.argv[1:]]))
    else:
        from dosmatgen.data.mp import merge_mp

        shards, out = args.shards or "data/mp", args.out or "data/mp_dos.npz"
        result = merge_mp(shards, out)
    n = result.get("n_records") if isinstance(result, dict) else result
    print(f"merged {shards} -> {out}" + (f" ({n} structures)" if isinstance(n, int) else ""))
    return 0


def _cmd_download_mp(args: argparse.Namespace) -> int:
    from dosmatgen.data.mp import download_mp, merge_mp

    summary = download_mp(args.out, api_key=args.api_key, limit=args.limit, batch_size=args.batch_size,
                          max_sites=args.max_sites, material_ids=args.ids,
                          required_points=args.required_points or None, min_interval=args.min_interval,
                          max_retries=args.max_retries, progress=not args.no_progress)
    print(summary)
    if args.merge:
        n = merge_mp(args.out, args.merge)
        print(f"merged {n} structures into {args.merge}")
    return 0


def source_fractions(text: str) -> tuple[str, tuple[float, float, float]]:
    """``SOURCE=TRAIN,VAL,TEST`` -> ``(source, fractions)``.

    >>> source_fractions("mp20=0.75,0.05,0.2")
    ('mp20', (0.75, 0.05, 0.2))
    """
    source, sep, rest = text.partition("=")
    parts = rest.split(",")
    if not sep or len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not SOURCE=TRAIN,VAL,TEST")
    return source.strip(), tuple(finite(p) for p in parts)  # type: ignore[return-value]


def _cmd_split(args: argparse.Namespace) -> int:
    from dosmatgen.data.plausibility import check_split_parts
    from dosmatgen.data.split import (SPLIT_NAMES, fit_standardiser_on_train, load_id_list, make_split,
                                      save_split, source_counts)
    from dosmatgen.data.store import DOSStore

    check_writable(args.out, "--out")
    if args.standardiser:
        check_writable(args.standardiser, "--standardiser")
    store = DOSStore(args.store)
    own = dict(args.source_fractions)
    if len(own) != len(args.source_fractions):
        raise ConfigError("--source-fractions names a source twice")
    base = load_id_list(args.base_ids) if args.base_ids else None
    split = make_split(store.ids, seed=args.seed, fractions=args.fractions, source_fractions=own,
                       base_ids=base)  # stratified
    check_split_parts(split, f"{len(store)} structure(s) of {args.store}")
    std = fit_standardiser_on_train(store, split) if args.standardiser else None  # fails before any write
    by_source = {k: source_counts(split[k]) for k in SPLIT_NAMES}
    # a one-source store writes the same file as before stratification; a mixed one records its strata
    mixed = len(source_counts(store.ids)) > 1
    extra = {"sources": by_source} if mixed else {}
    if own:
        extra["source_fractions"] = {k: list(v) for k, v in own.items()}
    if base is not None:  # recorded only when given: a split without it writes the file it always did
        extra["base_ids"] = {"file": str(args.base_ids), "n_base": len(base),
                             "added_to_train": source_counts(set(store.ids).difference(base))}
    save_split(args.out, split, seed=args.seed, fractions=list(args.fractions), store=str(args.store),
               n_structures=len(store), **extra)
    print(f"split {len(store)} structures: " + ", ".join(f"{k} {len(split[k])}" for k in SPLIT_NAMES)
          + f" -> {args.out}")
    if base is not None:
        print(f"  fixed on the {len(base)} ids of {args.base_ids}; {len(store) - len(base)} later id(s) "
              "went to training only")
    if mixed:
        print("  stratified by source: " + "; ".join(
            f"{k} " + ", ".join(f"{src} {n}" for src, n in by_source[k].items()) for k in SPLIT_NAMES))
    if std is not None:
        std.save(args.standardiser)
        print(f"DOS standardiser fitted on {len(split['train'])} training structures -> {args.standardiser}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from dosmatgen.data.info import dataset_summary, format_summary
    from dosmatgen.plots.dataset import check_figure_path, plot_dataset_figure, plot_site_dos
    from dosmatgen.data.store import DOSStore
    from dosmatgen.io import atomic_save_json, atomic_write

    if args.plot_site is not None and not args.out:
        raise ConfigError("--plot-site needs --out FIGURE")
    if args.out and args.plot_site is None:
        raise ConfigError("--out is the figure of --plot-site; give --plot-site ID:SITE")
    for option in ("json", "text", "figure", "out"):
        if getattr(args, option):
            check_writable(getattr(args, option), f"--{option}")
            if option in ("figure", "out"):
                check_figure_path(getattr(args, option), f"--{option}")
    if Path(args.store).is_dir():  # a build folder: count what its shards hold, no merge needed
        from dosmatgen.data.store import read_shards

        records, meta = read_shards(args.store)
        summary = dataset_summary(records, meta)
    else:
        records = DOSStore(args.store)
        records.verify()  # a summary must not vouch for a damaged file
        summary = dataset_summary(records)
    text = format_summary(summary, name=str(args.store))
    print(text)
    if args.json:
        atomic_save_json(args.json, summary)
    if args.text:
        with atomic_write(args.text) as handle:
            handle.write((text + "\n").encode("utf-8"))
    if args.figure:
        plot_dataset_figure(summary, args.figure)
        print(f"dataset figure -> {args.figure}")
    if args.plot_site is not None:
        sid, site = args.plot_site
        if isinstance(records, DOSStore):
            record = records[records.index(sid)]
        else:
            record = next((r for r in records if r.structure_id == sid), None)
            if record is None:
                raise DataError(f"structure id {sid!r} is not in the shards of {args.store}")
        i = plot_site_dos(record, site, args.out)
        print(f"DOS of {sid} site {i} -> {args.out}")
    return 0


def target_dict(record: Any, site: int | str, source: str) -> dict[str, Any]:
    """JSON-ready target of one site: {structure_id, site_index, element, energies, dos, source}."""
    from dosmatgen.data.info import resolve_site_index
    from dosmatgen.dos.grid import ENERGY_GRID

    if record.dos is None:
        raise DataError(f"{record.structure_id} has no site DOS")
    i = resolve_site_index(record, site)
    from pymatgen.core.periodic_table import Element

    return {"structure_id": record.structure_id, "site_index": i,
            "element": Element.from_Z(int(record.atomic_numbers[i])).symbol, "formula": record.formula,
            "energies": ENERGY_GRID.tolist(), "dos": record.dos[i].astype(float).tolist(), "source": source,
            "provenance": record.provenance}


def _cmd_target(args: argparse.Namespace) -> int:
    from dosmatgen.io import atomic_save_json

    if args.store:
        from dosmatgen.data.store import DOSStore

        if args.site is None:
            raise ConfigError("--store needs --site ID:SITE")
        store = DOSStore(args.store)
        sid, site = args.site
        target = target_dict(store[store.index(sid)], site, f"store {args.store}")
    else:
        from dosmatgen.data.mp import fetch_mp_record

        sid, site = args.mp
        target = target_dict(fetch_mp_record(sid, args.api_key), site, "mp")
    atomic_save_json(args.out, target)
    print(f"target {target['structure_id']} site {target['site_index']} ({target['element']}) -> {args.out}")
    return 0


def _cmd_import_json(args: argparse.Namespace) -> int:
    from dosmatgen.data.reference_json import read_reference_json
    from dosmatgen.data.store import save_records

    if args.split_out and not args.dir:
        raise ConfigError("--split-out needs --dir (a folder with train.json, val.json, test.json)")
    check_writable(args.out, "--out")
    if args.input:
        records = read_reference_json(args.input)
        save_records(args.out, records, {"source": "reference-json", "input": str(args.input)})
        source = args.input
    else:
        from dosmatgen.data.split import SPLIT_NAMES, check_split, save_split

        parts = {}
        for name in SPLIT_NAMES:
            path = Path(args.dir) / f"{name}.json"
            if not path.is_file():
                raise DataError(f"{args.dir} lacks {name}.json (a split folder holds train.json, val.json, test.json)")
            parts[name] = read_reference_json(path)
        records = [r for name in SPLIT_NAMES for r in parts[name]]
        split = {name: [r.structure_id for r in parts[name]] for name in SPLIT_NAMES}
        check_split(split)  # an id in two files is an error before anything is written
        save_records(args.out, records, {"source": "reference-json", "input": str(args.dir), "split": "as given"})
        if args.split_out:
            save_split(args.split_out, split, source=f"the files of {args.dir} (as given, not re-split)",
                       store=str(args.out), n_structures=len(records))
            print("split as given: " + ", ".join(f"{k} {len(split[k])}" for k in SPLIT_NAMES) + f" -> {args.split_out}")
        source = args.dir
    n_lab = sum(r.dos is not None for r in records)
    print(f"imported {len(records)} structures ({n_lab} with site DOS) from {source} -> {args.out}")
    return 0


def _cmd_export_json(args: argparse.Namespace) -> int:
    from dosmatgen.data.reference_json import write_reference_json
    from dosmatgen.data.store import DOSStore

    if (args.split is None) != (args.part is None):
        raise ConfigError("--split and --part go together")
    store = DOSStore(args.store)
    if args.split:
        from dosmatgen.data.split import load_split, split_indices

        idx = split_indices(store.ids, load_split(args.split))[args.part]
        records = store.records(int(k) for k in idx)
    else:
        records = store.records()
    n = write_reference_json(args.out, records)
    print(f"exported {n} structures -> {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from dosmatgen.cli import main

    sys.exit(main(["data", *sys.argv[1:]]))
