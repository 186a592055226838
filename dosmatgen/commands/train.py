"""``dosmatgen train``: train the diffusion model, the guidance regressor or the surrogate.

    dosmatgen train --kind diffusion --store data.npz --split split.json --standardiser std.json \\
        --size compact --epochs 1000 --out runs/diffusion

Settings come from (later wins): the defaults of :class:`~dosmatgen.training.TrainConfig` and of
the model size, the ``model`` / ``train`` sections of ``--config cfg.yaml``, then the flags. A run
directory with a ``last.pt`` is resumed automatically (``--fresh`` starts over, ``--resume``
insists on resuming). Several processes: ``torchrun --nproc_per_node K -m dosmatgen.cli train ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
from typing import Any

from dosmatgen.commands.arguments import declare_paths, non_negative, non_negative_int, positive, positive_int
from dosmatgen.data.split import split_records
from dosmatgen.errors import ConfigError, DataError
from dosmatgen.model.config import LATTICE_SCALES, TYPE_TARGETS
from dosmatgen.model.factory import SIZES, model_config_for_size

KINDS = ("diffusion", "regressor", "surrogate")
#: run-config spellings accepted in the ``train`` section, mapped to TrainConfig fields
_ALIASES = {"patience": "lr_patience"}


def _read_yaml(path: str) -> dict[str, Any]:
    from dosmatgen.config import read_yaml

    obj = read_yaml(path) or {}
    if not isinstance(obj, dict):
        raise ConfigError(f"{Path(path)}: expected a mapping with 'model' and/or 'train' sections")
    return obj


def resolve_configs(args: argparse.Namespace) -> tuple[dict[str, Any], "Any"]:
    """(model config dict, TrainConfig) from defaults, ``--config`` and flags."""
    from dosmatgen.training import TrainConfig

    file_cfg = _read_yaml(args.config) if args.config else {}
    per_kind = file_cfg.get("models") or {}
    model_sec = (per_kind.get(args.kind) if isinstance(per_kind, dict) and args.kind in per_kind
                 else file_cfg.get("model")) or {}
    train_sec = file_cfg.get("train") or {}
    if not isinstance(model_sec, dict) or not isinstance(train_sec, dict):
        raise ConfigError(f"{args.config}: 'model', 'models.{args.kind}' and 'train' must be mappings")
    # a run config (config/*.yaml) keys the train section by model kind
    if any(k in train_sec for k in KINDS):
        train_sec = train_sec.get(args.kind) or {}
    train_sec = {_ALIASES.get(k, k): v for k, v in train_sec.items()}

    size = args.size or model_sec.get("size") or "compact"
    explicit = {k: v for k, v in model_sec.items() if k != "size"}
    model_cfg = explicit if explicit and not args.size else model_config_for_size(args.kind, size)
    if args.type_target is not None:
        if args.kind != "diffusion":
            raise ConfigError(f"--type-target applies to --kind diffusion only, not {args.kind!r}")
        model_cfg = {**model_cfg, "diffusion": {**(model_cfg.get("diffusion") or {}), "type_target": args.type_target}}
    if args.lattice_scale is not None:
        if args.kind not in ("diffusion", "regressor"):
            raise ConfigError(f"--lattice-scale applies to --kind diffusion and regressor only, not {args.kind!r}")
        model_cfg = {**model_cfg, "diffusion": {**(model_cfg.get("diffusion") or {}),
                                                "lattice_scale": args.lattice_scale}}
    if args.dos_shift is not None:
        if args.kind != "diffusion":
            raise ConfigError(f"--dos-shift applies to --kind diffusion only, not {args.kind!r}")
        model_cfg = {**model_cfg, "diffusion": {**(model_cfg.get("diffusion") or {}), "dos_shift": args.dos_shift}}

    values = TrainConfig().to_dict()
    values.update(train_sec)
    flags = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "lr_patience": args.patience,
             "ema_decay": args.ema_decay, "checkpoint_every": args.checkpoint_every, "seed": args.seed,
             "device": args.device, "num_workers": args.num_workers, "max_steps": args.max_steps,
             "supercell_max_atoms": args.supercells, "deterministic": args.deterministic or None,
             "bf16": args.bf16 or None, "progress": False if args.no_progress else None,
             "init_weights": args.init_from}
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.repeat_source:
        values["source_repeats"] = parse_source_repeats(args.repeat_source)
    return model_cfg, TrainConfig.from_dict(values)


def parse_source_repeats(items: list[str]) -> dict[str, int]:
    """``["mp20=4"]`` -> ``{"mp20": 4}`` (the ``--repeat-source`` flag; TrainConfig checks values).

    >>> parse_source_repeats(["mp20=4", "prototypes=1"])
    {'mp20': 4, 'prototypes': 1}
    """
    out: dict[str, int] = {}
    for item in items:
        source, _, k = item.partition("=")
        try:
            out[source] = int(k)
        except ValueError:
            raise ConfigError(f"--repeat-source {item!r}: expected SOURCE=K with an integer K, e.g. mp20=4") from None
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    from dosmatgen.checkpoint import read_checkpoint
    from dosmatgen.data.standardise import DOSStandardiser
    from dosmatgen.io import check_writable, output_lock
    from dosmatgen.training import BEST, FINAL, train

    if args.resume and args.fresh:
        raise ConfigError("--resume and --fresh exclude each other")
    model_cfg, cfg = resolve_configs(args)
    out = check_writable(Path(args.out), "--out")
    parts = split_records(args.store, args.split)
    if not parts["train"]:
        raise DataError(f"split {args.split} has an empty training part")
    if not parts["val"]:  # best.pt and the learning-rate schedule follow the validation loss
        raise DataError(f"split {args.split} has an empty validation part: best.pt (validation-best) would be "
                        "chosen on the training loss; give a split with validation structures (dosmatgen data split)")
    if args.standardiser:
        std = DOSStandardiser.load(args.standardiser)
    else:
        blocks = [r.dos for r in parts["train"] if r.dos is not None]
        if not blocks:
            raise DataError("the training split has no site DOS to fit a standardiser on")
        std = DOSStandardiser.fit(blocks)
    resume = "require" if args.resume else "never" if args.fresh else "auto"
    rank0 = int(os.environ.get("RANK", "0")) == 0  # under torchrun every rank runs this; rank 0 writes
    with output_lock(out, "--out") if rank0 else contextlib.nullcontext():  # a second train on --out stops
        last = train(args.kind, model_cfg, parts["train"], parts["val"], std, cfg, out, resume=resume)
        if not args.standardiser and rank0:
            std.save(out / "standardiser.json")  # also inside every checkpoint
    if rank0:
        rows = (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() else []
        tail = json.loads(rows[-1]) if rows else {}
        summary = ", ".join(f"{k} {tail[k]:.4g}" for k in ("train_loss", "val_loss") if k in tail)
        extra = read_checkpoint(last)["extra"]  # counts as saved, also when max_steps ends an epoch early
        print(f"trained {args.kind}: {extra.get('step', 0)} optimiser steps, {extra.get('epoch', 0)} full epochs"
              + (f", {summary}" if summary else "") + f"; checkpoints {last}, {out / BEST} (validation-best) and {out / FINAL} (final)")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", required=True, choices=KINDS, help="which network to train")
    p.add_argument("--store", required=True, help="dataset store (.npz, dosmatgen data ...)")
    p.add_argument("--split", required=True, help='split JSON {"train": [ids], "val": [...], "test": [...]}')
    p.add_argument("--standardiser", default=None,
                   help="DOS standardiser JSON (default: fit on the training part, save in --out)")
    p.add_argument("--config", default=None,
                   help="YAML with a 'model' section (a model config, or {size: ...}; 'models: {KIND: ...}' "
                        "per kind) and a 'train' section (TrainConfig keys, optionally per kind); flags "
                        "override it")
    p.add_argument("--size", choices=SIZES, default=None,
                   help="model size (default compact); overrides an explicit model config")
    p.add_argument("--type-target", choices=TYPE_TARGETS, default=None,
                   help="diffusion only: what the type head predicts. eps = the paper (noise of the type "
                        "vectors, A10); x0 = the clean element (cross-entropy); posterior = x0 combined with "
                        "the exact likelihood of the noisy types by Bayes' rule (see DiffusionConfig and "
                        "results/ablation_condition.md). Default: the config's, else eps")
    p.add_argument("--lattice-scale", choices=LATTICE_SCALES, default=None,
                   help="diffusion and regressor: what the lattice channel diffuses. none = the lattice (the "
                        "paper); atoms = the lattice / N^(1/3), the same size for every number of atoms N "
                        "(see DiffusionConfig). Default: the config's, else none")
    p.add_argument("--dos-shift", type=non_negative_int, default=None, metavar="BINS",
                   help="diffusion only: in training, move each crystal's DOS condition by a random whole "
                        "number of energy bins (0.05 eV) up to BINS either way, a regulariser against "
                        "memorised peaks (not in the paper; see DiffusionConfig.dos_shift). Default: the "
                        "config's, else 0 (off)")
    p.add_argument("--out", required=True, help="run directory (last.pt, best.pt, final.pt, metrics.csv ...)")
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=None, help="global batch (default 256)")
    p.add_argument("--lr", type=positive, default=None, help="Adam learning rate (default 1e-3)")
    p.add_argument("--patience", type=non_negative_int, default=None, help="ReduceLROnPlateau patience (default 30)")
    p.add_argument("--ema-decay", type=non_negative, default=None, help="keep an EMA of the weights (e.g. 0.999)")
    p.add_argument("--checkpoint-every", type=positive_int, default=None, help="epochs between last.pt saves (default 10)")
    p.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many optimiser steps")
    p.add_argument("--repeat-source", action="extend", nargs="+", default=None, metavar="SOURCE=K",
                   help="draw each training structure of SOURCE (prototypes, mp20, mp, other) K times per "
                        "epoch, e.g. mp20=4 to weight the real crystals of a mixed store (several "
                        "values or repeated flags; default: every structure once, the paper)")
    p.add_argument("--supercells", type=positive_int, default=None, metavar="MAX_ATOMS",
                   help="also train on a doubled cell of each training crystal of at most MAX_ATOMS / 2 "
                        "atoms (the same crystal, its site DOS copied: more large cells at no DFT cost; "
                        "measured in results/validity_probe/: no validity gain for the compact model; "
                        "default: off, the paper)")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="fine-tune: start from this checkpoint's weights (same kind, model config and "
                        "standardiser) with a fresh optimiser and schedule, e.g. on a split of one "
                        "source's crystals (default: random initialisation, the paper)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or auto (default auto)")
    p.add_argument("--seed", type=non_negative_int, default=None)
    p.add_argument("--num-workers", type=non_negative_int, default=None, help="DataLoader workers (default 0)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPU)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels: bit-identical reruns with several threads (docs/reproducibility.md)")
    p.add_argument("--resume", action="store_true", help="require --out/last.pt and continue it")
    p.add_argument("--fresh", action="store_true", help="ignore an existing --out/last.pt and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    declare_paths(p, inputs=("store", "split", "standardiser", "config", "init_from"), outputs={"out": "dir"})
    p.set_defaults(func=_cmd_train)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train the diffusion model, the regressor or the surrogate",
        description="Train a network (Adam, ReduceLROnPlateau on the validation loss, gradient clip, "
                    "checkpoints). Settings: TrainConfig and model-size defaults < the 'model'/'train' "
                    "sections of --config < flags. A run directory holding last.pt is resumed.",
        epilog="example: dosmatgen train --kind diffusion --store data.npz --split split.json "
               "--standardiser std.json --size compact --epochs 1000 --out runs/diffusion\n"
               "several processes: torchrun --nproc_per_node 2 -m dosmatgen.cli train ...",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
