"""Copy the committed result tables into README.md and the docs pages, or check that the copies are current.

The documents show Tables 1-2, the claims check, the formation energies (``results/*.md``) and the
dataset summary (``results/data_info.txt``, in a code fence) as they stand. Each copy sits between
two markers naming its file::

    <!-- begin results/table1_dos_mae.md -->
    ...the file without its "# " title line (a non-Markdown file: its text in a code fence)...
    <!-- end results/table1_dos_mae.md -->

A marker may add ``first-table`` (``<!-- begin results/table1_dos_mae.md first-table -->``): the
copy then stops after the file's first Markdown table (README.md's headline tables; the whole
files are in ``docs/results.md``).

    python scripts/sync_readme_tables.py           # rewrite every marked block of every document
    python scripts/sync_readme_tables.py --check   # exit 1 and name each stale block; write nothing
    python scripts/sync_readme_tables.py --readme FILE [--check]   # one document only

Run it after a demo rerun (``bash scripts/demo_run.sh``); the tests run ``--check`` so that a
document whose tables no longer match ``results/`` fails CI.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from dosmatgen.io import atomic_write

ROOT = Path(__file__).resolve().parent.parent
# the documents that hold blocks (README.md: the headline tables; docs/: the whole files)
DOCUMENTS = ("README.md", "docs/results.md", "docs/data.md")
BLOCK = re.compile(r"(<!-- begin (?P<path>[^ ]+)(?P<part>(?: first-table)?) -->\n)(?P<body>.*?)"
                   r"(<!-- end (?P=path)(?P=part) -->)", re.S)


def file_body(path: Path, part: str = "") -> str:
    """A Markdown file's text without its leading ``# `` title and the blank lines after it (with
    ``part="first-table"``: up to the end of its first table); any other file's text in a code fence."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix != ".md":
        return "```\n" + "\n".join(lines).rstrip("\n") + "\n```\n"
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    while lines and not lines[0].strip():
        lines = lines[1:]
    if part == "first-table":
        start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
        if start is None:
            raise SystemExit(f"{path} has no Markdown table (a first-table block names it)")
        end = start
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        lines = lines[:end]
    return "\n".join(lines).rstrip("\n") + "\n"


def synced(readme: str, root: Path) -> tuple[str, list[str]]:
    """The document's text with every marked block replaced by its file's body, and the stale
    blocks (their paths, `` first-table`` appended for a partial block)."""
    stale: list[str] = []

    def replace(match: re.Match) -> str:
        source = root / match["path"]
        if not source.is_file():
            raise SystemExit(f"block names {match['path']}, which does not exist")
        body = file_body(source, match["part"].strip())
        if body != match["body"]:
            stale.append(match["path"] + match["part"])
        return match[1] + body + match[5]

    return BLOCK.sub(replace, readme), stale


def sync_one(document: Path, check: bool) -> int:
    """0: current (or rewritten); 1: stale under ``check``; 2: no blocks in the document."""
    text = document.read_text(encoding="utf-8")
    if not BLOCK.search(text):
        print(f"{document}: no <!-- begin results/... --> blocks", file=sys.stderr)
        return 2
    new, stale = synced(text, ROOT)
    if check:
        for path in stale:
            print(f"stale in {document.name}: {path} (run: python scripts/sync_readme_tables.py)")
        return 1 if stale else 0
    if stale:
        with atomic_write(document) as handle:
            handle.write(new.encode("utf-8"))
    print(f"{document.name}: {len(stale)} block(s) updated: {', '.join(stale) or 'none'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a block is stale; write nothing")
    parser.add_argument("--readme", type=Path, default=None,
                        help=f"one document to read (default: every one of {', '.join(DOCUMENTS)})")
    args = parser.parse_args(argv)
    documents = [args.readme] if args.readme is not None else [ROOT / d for d in DOCUMENTS]
    return max(sync_one(document, args.check) for document in documents)


if __name__ == "__main__":
    sys.exit(main())
