"""``dosmatgen import``: bring trained models made elsewhere into our checkpoint format.

``dosmatgen import authors --release DIR --out RUN_DIR`` reads the authors' released CFG model
(see :mod:`dosmatgen.model.authors_release`) and writes into ``RUN_DIR``:

- ``best.pt``: a normal diffusion checkpoint (the release's DOS standardiser inside, provenance in
  ``extra['imported_from']``, no optimiser state: training does not resume from it);
- ``standardiser.json``: the release's DOS standardiser (``prop_scaler.pt``), as our other stages read it;
- ``provenance.json``: source file hashes, the authors' commit when given, the weight mapping.

Everything is read and checked before the first file is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dosmatgen.commands.arguments import declare_paths
from dosmatgen.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("import", help="import a model trained elsewhere (the authors' release)",
                              description="Import trained models made by other code into dosmatgen checkpoints.")
    sub = p.add_subparsers(dest="what", metavar="WHAT")
    sub.required = True
    a = sub.add_parser(
        "authors", help="the authors' released CFG model folder -> a dosmatgen diffusion checkpoint",
        description="Read the folder the authors' run_diffusion_CFG.py writes (one *.ckpt, hparams.yaml, "
                    "prop_scaler.pt, lattice_scaler.pt) without Lightning or their code, map the weights "
                    "exactly into our denoiser, take the DOS standardiser from prop_scaler.pt and the "
                    "abar_t / lambda_t tables from the checkpoint, and write RUN_DIR/best.pt, "
                    "RUN_DIR/standardiser.json and RUN_DIR/provenance.json. Only the classes such a release "
                    "needs are unpickled (weights_only loading with an allow-list).")
    a.add_argument("--release", required=True, help="the release folder")
    a.add_argument("--out", required=True, help="folder to write best.pt, standardiser.json, provenance.json into")
    a.add_argument("--authors-commit", default=None,
                   help="commit of Fung-Lab/DOSMatGen the release was trained with, for provenance (the "
                        "release files do not record it)")
    declare_paths(a, inputs=("release",), outputs={"out": "dir"})
    a.set_defaults(func=_cmd_authors)


def _cmd_authors(args: argparse.Namespace) -> int:
    from dosmatgen.checkpoint import save_checkpoint
    from dosmatgen.io import atomic_save_json
    from dosmatgen.model.authors_release import import_release

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    release = import_release(args.release, authors_commit=args.authors_commit)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "best.pt", release.model, "diffusion", release.standardiser,
                    extra={"imported_from": release.provenance, "finished": True})
    release.standardiser.save(out / "standardiser.json")
    atomic_save_json(out / "provenance.json", release.provenance)
    cfg = release.model.model_cfg
    print(f"imported {args.release}: hidden {cfg.hidden_dim}, {cfg.num_layers} layers, "
          f"{cfg.num_freqs + 1} Fourier frequencies (theirs), T = {release.model.timesteps} -> {out}/best.pt")
    return 0
