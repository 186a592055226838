"""``dosmatgen figures``: formation-energy figures, the figure gallery, the output check, provenance.

    dosmatgen figures formation --truth gt.csv --generated cfg:1000=cfg_T1000.csv ... --out figures/
    dosmatgen figures gallery --figures figures/
    dosmatgen figures check results/ figures/ --require results/table1_dos_mae.csv
    dosmatgen figures provenance --run-config config/demo.yaml --inputs store.npz split.json --out prov.json

(The constrained-generation study figures are drawn by ``dosmatgen studies figures``; the workflow's
report is Snakemake's own, ``snakemake --report report.zip``.)
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from dosmatgen.commands.arguments import declare_paths
from dosmatgen.errors import ConfigError

_GENERATED = re.compile(r"^(?P<guidance>[A-Za-z_-]+):(?P<t0>\d+)=(?P<path>.+)$")


def register(subparsers) -> None:
    parser = subparsers.add_parser("figures", help="draw the formation-energy figures and the gallery; check outputs",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="figures_command", metavar="WHAT")
    sub.required = True

    p = sub.add_parser("formation", help="paper Fig. 2 (T = 1000) and Fig. B.1 (T = 200, 500)")
    p.add_argument("--truth", help="formation-energy table of the ground-truth test structures")
    p.add_argument("--generated", nargs="+", required=True, metavar="GUIDANCE:T=FILE",
                   help="formation-energy tables of generated structures, e.g. cfg:1000=work/demo/formation/cfg_T1000.csv")
    p.add_argument("--out", required=True, help="folder for the PNG + PDF files")
    p.add_argument("--mlff", default="MLFF", help="force-field name for the captions")
    p.add_argument("--which", nargs="+", choices=("fig2", "figB1"), default=("fig2", "figB1"))
    declare_paths(p, inputs=("truth", "generated"), outputs={"out": "dir"})
    p.set_defaults(func=run_formation)

    p = sub.add_parser("gallery", help="write FIGURES/README.md listing every figure with its caption")
    p.add_argument("--figures", required=True, help="folder of PNG (+ PDF) figures")
    p.add_argument("--out", help="Markdown file (default FIGURES/README.md)")
    p.add_argument("--intro", default="", help="paragraph under the heading")
    declare_paths(p, inputs=("figures",), outputs={"out": "file"})
    p.set_defaults(func=run_gallery)

    p = sub.add_parser("check", help="gate: every table / figure file exists, parses, has no NaN (exit 1 if not)")
    p.add_argument("folders", nargs="+", help="folders whose CSV/MD/JSON/PNG/PDF files are checked")
    p.add_argument("--require", nargs="*", default=[], help="files that must exist (and pass the same checks)")
    declare_paths(p, inputs=("require",))
    p.set_defaults(func=run_check)

    p = sub.add_parser("provenance", help="provenance JSON of a run: config, code versions, input checksums")
    p.add_argument("--run-config", required=True,
                   help="the run config: a YAML/JSON file, or the JSON text itself (as the workflow passes it)")
    p.add_argument("--inputs", nargs="*", default=[], help="files whose size and SHA-256 to record")
    p.add_argument("--out", required=True, help="JSON file to write")
    declare_paths(p, inputs=("run_config", "inputs"), outputs={"out": "file"})
    p.set_defaults(func=run_provenance)


def parse_generated(specs: list[str]) -> dict[tuple[str, int], Path]:
    """``["cfg:1000=a.csv", ...]`` -> ``{("cfg", 1000): Path("a.csv"), ...}``."""
    out: dict[tuple[str, int], Path] = {}
    for spec in specs:
        m = _GENERATED.match(spec)
        if not m:
            raise ConfigError(f"--generated {spec!r}: expected GUIDANCE:T=FILE, e.g. cfg:1000=cfg_T1000.csv")
        key = (m["guidance"], int(m["t0"]))
        if key in out:
            raise ConfigError(f"--generated: {key[0]} at T = {key[1]} given twice")
        out[key] = Path(m["path"])
    return out


def run_formation(args: argparse.Namespace) -> int:
    from dosmatgen.plots.formation import load_formation, plot_fig2, plot_figB1

    files = parse_generated(args.generated)
    generated = {key: load_formation(path) for key, path in files.items()}
    truth = load_formation(args.truth) if args.truth else None
    written = []
    if "fig2" in args.which:
        written += plot_fig2(generated, truth, args.out, mlff=args.mlff)
    if "figB1" in args.which:
        t_partial = sorted({t for _, t in generated if t != 1000}) or [200, 500]
        written += plot_figB1(generated, truth, args.out, t_values=t_partial, mlff=args.mlff)
    for path in written:
        print(path)
    return 0


def run_gallery(args: argparse.Namespace) -> int:
    from dosmatgen.plots.gallery import write_gallery

    if not Path(args.figures).is_dir():  # stops here, instead of an empty gallery
        raise ConfigError(f"--figures {args.figures} is not an existing folder")
    print(write_gallery(args.figures, args.out, intro=args.intro))
    return 0


def run_provenance(args: argparse.Namespace) -> int:
    import json

    from dosmatgen.config import load_run_config, validate_run_config, write_provenance

    text = args.run_config.strip()
    if text.startswith("{"):
        try:
            config = validate_run_config(json.loads(text), source="--run-config")
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--run-config: not valid JSON: {exc}") from exc
    else:
        config = load_run_config(text)
    print(write_provenance(args.out, config, inputs={"files": args.inputs}))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from dosmatgen.plots.check import check_outputs

    n, problems = check_outputs(args.folders, args.require)
    for msg in problems:
        print(f"FAIL {msg}")
    print(f"checked {n} files: " + ("all well-formed, no NaN" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0
