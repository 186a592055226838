"""The ``dosmatgen`` command: a thin dispatcher over ``dosmatgen.commands.*``.

Each command module exposes ``register(subparsers)`` which adds its sub-command(s) and sets
``func`` on the parser. A :class:`~dosmatgen.errors.DosmatgenError` becomes a one-line message on
stderr and exit code 2; nothing is half-written because every writer goes through
:func:`dosmatgen.io.atomic_write`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dosmatgen.errors import DosmatgenError

#: Command modules, in the order ``--help`` lists them.
COMMAND_MODULES = ("data", "imports", "train", "sample", "bench", "plan", "evaluate", "studies", "figures")


def build_parser() -> argparse.ArgumentParser:
    from dosmatgen.commands.arguments import OneLineErrorParser

    parser = OneLineErrorParser(
        prog="dosmatgen",
        description="Generate crystals whose per-atom DOS matches a target (DOSMatGen replication).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"dosmatgen.commands.{name}")
        except ModuleNotFoundError as exc:  # a command whose module is not written yet
            if exc.name == f"dosmatgen.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


def run_command(args: argparse.Namespace, prog: str) -> int:
    """Check the declared paths of parsed ``args`` and run ``args.func``: a
    :class:`~dosmatgen.errors.DosmatgenError` or an unchecked file-system refusal is one line on
    stderr (``prog: error: ...``) and exit 2, an interrupt exit 130 (rerun to resume)."""
    from dosmatgen.commands.arguments import check_paths

    try:
        check_paths(args)
        result = args.func(args)
    except DosmatgenError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file system refusal nobody checked for: still one line, not a traceback
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"{prog}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return int(result or 0)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args, f"dosmatgen {args.command}")


if __name__ == "__main__":
    sys.exit(main())
