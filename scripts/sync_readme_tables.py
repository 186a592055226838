"""Copy the committed result tables into README.md, or check that the README's copies are current.

The README shows Tables 1-2, the claims check, the formation energies (``results/*.md``) and the
dataset summary (``results/data_info.txt``, in a code fence) as they stand. Each copy sits between
two markers naming its file::

    <!-- begin results/table1_dos_mae.md -->
    ...the file without its "# " title line (a non-Markdown file: its text in a code fence)...
    <!-- end results/table1_dos_mae.md -->

    python scripts/sync_readme_tables.py           # rewrite every marked block from its file
    python scripts/sync_readme_tables.py --check   # exit 1 and name each stale block; write nothing

Run it after a demo rerun (``bash scripts/demo_run.sh``); the tests run ``--check`` so that a
README whose tables no longer match ``results/`` fails CI.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from dosmatgen.io import atomic_write

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- begin (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- end (?P=path) -->)", re.S)


def file_body(path: Path) -> str:
    """A Markdown file's text without its leading ``# `` title and the blank lines after it; any
    other file's text in a code fence."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix != ".md":
        return "```\n" + "\n".join(lines).rstrip("\n") + "\n```\n"
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    while lines and not lines[0].strip():
        lines = lines[1:]
    return "\n".join(lines).rstrip("\n") + "\n"


def synced(readme: str, root: Path) -> tuple[str, list[str]]:
    """README text with every marked block replaced by its file's body, and the stale paths."""
    stale: list[str] = []

    def replace(match: re.Match) -> str:
        source = root / match["path"]
        if not source.is_file():
            raise SystemExit(f"README block names {match['path']}, which does not exist")
        body = file_body(source)
        if body != match["body"]:
            stale.append(match["path"])
        return match[1] + body + match[4]

    return BLOCK.sub(replace, readme), stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a block is stale; write nothing")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="README to read (default: the repo's)")
    args = parser.parse_args(argv)
    readme = args.readme.read_text(encoding="utf-8")
    if not BLOCK.search(readme):
        print(f"{args.readme}: no <!-- begin results/... --> blocks", file=sys.stderr)
        return 2
    text, stale = synced(readme, ROOT)
    if args.check:
        for path in stale:
            print(f"stale in {args.readme.name}: {path} (run: python scripts/sync_readme_tables.py)")
        return 1 if stale else 0
    if stale:
        with atomic_write(args.readme) as handle:
            handle.write(text.encode("utf-8"))
    print(f"{len(stale)} block(s) updated: {', '.join(stale) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
