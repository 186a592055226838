"""``python -m dev_scripts.builtin COMMAND`` (run from the repository root): the built-in dataset
builder's command line, formerly ``dosmatgen data build-builtin / export-jobs / ingest-jobs``.

Commands::

    build         label the built-in prototype (or MP-20) crystals with GPAW (resumable shards)
    export-jobs   relax the next candidates and write their GPAW jobs, to label elsewhere
    ingest-jobs   read the GPAW outputs of exported jobs into the build's shards

Merging the shards into a store is the package's: ``dosmatgen data merge --source builtin``
(or ``build --merge-only --store PATH`` here).  Errors are one line and exit 2, as in ``dosmatgen``.
"""

from __future__ import annotations

import argparse

from dosmatgen.cli import run_command
from dosmatgen.commands.arguments import OneLineErrorParser, declare_paths, non_negative_int, positive_int

PROG = "python -m dev_scripts.builtin"
DEFAULT_BUILTIN_SHARDS = "resources/builtin"


def build_parser() -> argparse.ArgumentParser:
    from dev_scripts.builtin.build import add_build_arguments, run_build

    parser = OneLineErrorParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    # build (formerly dosmatgen data build-builtin) -------------------------------------------
    b = sub.add_parser(
        "build", help="label the built-in prototype crystals with GPAW site DOS (resumable)",
        description="Build the built-in dataset: prototype crystals with element substitutions, relaxed "
                    "with the default MLFF, labelled with GPAW (PBE, LCAO) site-projected DOS; with "
                    "--source mp20, real MP-20 crystals labelled unrelaxed with the same protocol. Writes "
                    "resumable shards; merge them with `dosmatgen data merge`.",
    )
    add_build_arguments(b)
    declare_paths(b, inputs=("pool",), outputs={"out": "dir", "store": "file"})
    b.set_defaults(func=run_build)

    # export-jobs / ingest-jobs (label on another machine) ----------------------------------
    ej = sub.add_parser(
        "export-jobs", help="relax the next built-in candidates and write their GPAW jobs, to label elsewhere",
        description="For a DFT host whose Python has gpaw but not torch/pymatgen: relax the next "
                    "candidates not in the ledgers of --shards and write ID.job.json + ID.meta.json into "
                    "--jobs. There run `python3 gpaw_worker.py ID.job.json ID.out.npz` per job (the worker "
                    f"is dosmatgen/dos/gpaw_worker.py), then `{PROG} ingest-jobs`.",
        epilog=f"example: {PROG} export-jobs --shards resources/builtin --jobs work/jobs --n 200 --skip 100",
    )
    ej.add_argument("--shards", default=DEFAULT_BUILTIN_SHARDS, metavar="DIR", help="the build's shard folder")
    ej.add_argument("--jobs", required=True, metavar="DIR", help="folder to write the jobs into")
    ej.add_argument("--n", type=positive_int, required=True, help="number of candidates to export")
    ej.add_argument("--skip", type=non_negative_int, default=0,
                    help="skip the first SKIP candidates still to do (e.g. those a running local build will take)")
    ej.add_argument("--n-max", type=positive_int, default=4000, help="candidate list length, as in build")
    ej.add_argument("--seed", type=non_negative_int, default=0)
    ej.add_argument("--source", choices=["prototypes", "mp20"], default="prototypes",
                    help="candidates, as in build: prototype crystals (default) or MP-20 crystals "
                         "(exported unrelaxed)")
    ej.add_argument("--pool", default=None, metavar="PATH", help="MP-20 pool JSON (default: as in build)")
    ej.add_argument("--max-atoms", type=positive_int, default=None, metavar="N",
                    help="--source mp20: only cells with at most N atoms (default: as in build)")
    ej.add_argument("--retry-failed", default=None, metavar="TEXT",
                    help="also export recorded failures whose reason contains TEXT, as in build")
    ej.add_argument("--maxiter", type=positive_int, default=100, help="SCF iteration cap per mixer setting")
    ej.add_argument("--no-progress", action="store_true")
    declare_paths(ej, inputs=("shards", "pool"), outputs={"jobs": "dir"})
    ej.set_defaults(func=_cmd_export_jobs)
    ij = sub.add_parser(
        "ingest-jobs", help="read the GPAW outputs of exported jobs into the build's shards",
        description="Read every ID.out.npz beside the exported jobs into shard-offsite-*.npz and "
                    "ledger-offsite.jsonl in --shards (idempotent; jobs without output stay to do).",
    )
    ij.add_argument("--jobs", required=True, metavar="DIR", help="folder of exported jobs and their outputs")
    ij.add_argument("--shards", default=DEFAULT_BUILTIN_SHARDS, metavar="DIR", help="the build's shard folder")
    ij.add_argument("--host", default=None, help="where the jobs ran, recorded in the ledger and shard meta")
    declare_paths(ij, inputs=("jobs",), outputs={"shards": "dir"})
    ij.set_defaults(func=_cmd_ingest_jobs)
    return parser


def _cmd_export_jobs(args: argparse.Namespace) -> int:
    from dev_scripts.builtin.offsite import export_jobs

    counts = export_jobs(args.shards, args.jobs, args.n, skip=args.skip, seed=args.seed, n_max=args.n_max,
                         engine_kwargs={"maxiter": args.maxiter}, progress=not args.no_progress, source=args.source,
                         pool=args.pool, max_atoms=args.max_atoms, retry_failed=args.retry_failed)
    print(f"wrote {counts['written']} jobs into {args.jobs} ({counts['failed']} relaxations failed, left to a "
          f"local build)")
    return 0


def _cmd_ingest_jobs(args: argparse.Namespace) -> int:
    from dev_scripts.builtin.offsite import ingest_jobs

    c = ingest_jobs(args.jobs, args.shards, host=args.host)
    print(f"ingested {c['done']} labelled and {c['failed']} failed; {c['pending']} without output, "
          f"{c['retry']} left for a local build (over-complete basis)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse and run with ``dosmatgen``'s error handling (:func:`dosmatgen.cli.run_command`): a
    :class:`~dosmatgen.errors.DosmatgenError` or an unchecked file-system refusal is one line on
    stderr and exit 2."""
    args = build_parser().parse_args(argv)
    return run_command(args, f"{PROG} {args.command}")

