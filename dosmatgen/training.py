"""Training loop shared by every network of the factory (diffusion, regressor, surrogate).

Recipe (DESIGN §4, the paper's reference config): Adam, lr 1e-3, ``ReduceLROnPlateau`` on the
validation loss (factor 0.6, patience 30, min lr 1e-4), gradients clipped to ±0.5 by value, global
batch 256, up to 1000 epochs, seeded. The loss is whatever ``model.loss(batch, generator)`` returns
under key ``"loss"`` (for the joint diffusion that is eq. A11).

Crash safety and resume: ``out_dir/last.pt`` is written atomically every ``checkpoint_every``
epochs, at the end, and when the run is stopped by Ctrl-C or SIGTERM (the signal is turned into a
flag, the current step finishes, then the state is saved). When ``out_dir/last.pt`` exists,
:func:`train` continues from it: data order is a function of (seed, epoch) and the noise of each
step a function of (seed, rank, step), so a resumed run reproduces the uninterrupted one, even when
the interruption fell mid-epoch. ``best.pt`` holds the weights with the lowest validation loss
(a run whose ``max_steps`` ends it before its first validation saves its final weights there);
``final.pt`` the weights at the end of a run that finished (its epochs or ``max_steps``; the EMA
weights when ``ema_decay`` is set), written only then, so its presence means the run is complete;
``metrics.csv`` / ``metrics.jsonl`` one row per epoch.

Several processes: launched with ``torchrun --nproc_per_node K`` (``WORLD_SIZE > 1``) the loop
uses :class:`~torch.nn.parallel.DistributedDataParallel` (gloo on CPU, nccl on CUDA) and a
:class:`~torch.utils.data.DistributedSampler`; the global batch stays ``batch_size`` (each rank
takes ``batch_size / K``) so the loss curve matches a single process; only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, DistributedSampler

from dosmatgen.checkpoint import read_checkpoint, save_checkpoint
from dosmatgen.config_dataclass import config_from_dict
from dosmatgen.data.augment import check_max_atoms, with_supercells
from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.device import resolve_device
from dosmatgen.errors import ConfigError, DataError
from dosmatgen.io import atomic_save_json, atomic_write
from dosmatgen.progress import Lines
from dosmatgen.stopping import StopFlag

LAST = "last.pt"
BEST = "best.pt"
FINAL = "final.pt"

#: TrainConfig fields that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = frozenset({"epochs", "max_steps", "checkpoint_every", "device", "num_workers",
                               "progress", "deterministic"})


@dataclass
class TrainConfig:
    """Every number of a training run. ``to_dict``/``from_dict`` round-trip through YAML/JSON.

    Attributes:
        epochs: passes over the training set (paper: up to 1000).
        batch_size: global batch (summed over DDP ranks).
        lr: Adam learning rate.
        lr_factor, lr_patience, min_lr: ``ReduceLROnPlateau`` on the validation loss.
        grad_clip: clip each gradient entry to [-grad_clip, grad_clip] (None: no clipping).
        weight_decay: Adam weight decay.
        ema_decay: exponential moving average of the weights (None: off); the EMA weights are
            validated and saved as the inference weights.
        checkpoint_every: write ``last.pt`` every this many epochs (and always at the end).
        seed: seeds weights, data order and diffusion noise.
        device: "cpu", "cuda", "cuda:1" or "auto".
        bf16: bfloat16 autocast for forward passes.
        num_workers: DataLoader worker processes.
        max_steps: stop after this many optimiser steps in total (tests, smoke runs).
        progress: show tqdm bars.
        source_repeats: how many times per epoch each training structure of a source
            (:func:`dosmatgen.data.split.record_source`, e.g. ``{"mp20": 4}``) is drawn; others
            once. None (the paper): every structure once. It rebalances a mixed store whose
            crystals of interest are a minority, at the same number of optimiser steps.
        supercell_max_atoms: also train on a doubled cell of each training crystal that has at
            most half this many atoms (:func:`dosmatgen.data.augment.with_supercells`: the same
            crystal with its site DOS copied, no DFT). None (the paper): off.
        deterministic: PyTorch's deterministic kernels (:func:`deterministic_algorithms`): with
            several CPU threads, the backward of ``h[i]`` (message passing) sums in a varying order
            and two runs differ in the last bits; with this they do not (docs/reproducibility.md).
        init_weights: start from the (inference) weights of this checkpoint instead of a seeded
            random initialisation: fine-tuning, e.g. on one source's crystals. It must be of the same
            kind, model config and DOS standardiser; optimiser, schedule and step count start afresh.
            None (the paper): random initialisation.
    """

    epochs: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    lr_factor: float = 0.6
    lr_patience: int = 30
    min_lr: float = 1e-4
    grad_clip: float | None = 0.5
    weight_decay: float = 0.0
    ema_decay: float | None = None
    checkpoint_every: int = 10
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    num_workers: int = 0
    max_steps: int | None = None
    progress: bool = True
    source_repeats: dict[str, int] | None = None
    supercell_max_atoms: int | None = None
    deterministic: bool = False
    init_weights: str | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and self.min_lr >= 0):
            raise ConfigError(f"need lr > 0 and min_lr >= 0, got lr={self.lr}, min_lr={self.min_lr}")
        if not 0 < self.lr_factor < 1:
            raise ConfigError(f"lr_factor must lie in (0, 1), got {self.lr_factor}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"ema_decay must lie in (0, 1) or be null, got {self.ema_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1 or null, got {self.max_steps}")
        if self.source_repeats is not None:
            from dosmatgen.data.split import SOURCES

            for source, k in self.source_repeats.items():
                if source not in SOURCES:
                    raise ConfigError(f"source_repeats: unknown source {source!r}; known: {list(SOURCES)}")
                if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                    raise ConfigError(f"source_repeats[{source!r}] must be an integer >= 1, got {k!r}")
        check_max_atoms(self.supercell_max_atoms)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "TrainConfig":
        return config_from_dict(cls, d, "training")


class TrainingInterrupted(KeyboardInterrupt):
    """Raised after Ctrl-C / SIGTERM once ``last.pt`` has been written; rerun to resume."""


# ---- distributed helpers ------------------------------------------------------------------------
@dataclass
class DistContext:
    """Where this process sits in a torchrun launch (world_size 1 without torchrun)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_sum(self, values: list[float]) -> list[float]:
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._reduce_device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def any_flag(self, flag: bool) -> bool:
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self._reduce_device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    _reduce_device: torch.device = field(default=torch.device("cpu"), repr=False)


def setup_distributed(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the process group torchrun describes in the environment (no-op for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), device
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    ctx = DistContext(world_size=dist.get_world_size(), rank=dist.get_rank(), local_rank=local,
                      owns_group=owns)
    ctx._reduce_device = device if device.type == "cuda" else torch.device("cpu")
    return ctx, device


class _LossModule(torch.nn.Module):
    """Routes ``model.loss`` through ``forward`` so that DistributedDataParallel sees the call."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return self.model.loss(batch, generator=generator)


# ---- EMA ----------------------------------------------------------------------------------------
class _EMA:
    """Exponential moving average of the floating-point weights."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if v.dtype.is_floating_point:
                s.mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
            else:
                s.copy_(v)

    @contextlib.contextmanager
    def swapped_in(self, model: torch.nn.Module) -> Iterator[None]:
        raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield
        finally:
            model.load_state_dict(raw)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """With ``enabled``, ``torch.use_deterministic_algorithms(True, warn_only=True)`` inside the
    block (an op without a deterministic kernel warns instead of failing; on CUDA, cuBLAS is asked
    for its deterministic workspace unless ``CUBLAS_WORKSPACE_CONFIG`` is set); restored after."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def _mix(*ints: int) -> int:
    """A 63-bit seed from several integers (splitmix-style), stable across runs and platforms."""
    h = 0x9E3779B97F4A7C15
    for v in ints:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, dist: DistContext) -> list[list[int]]:
    """This rank's index batches for ``epoch``: a :class:`DistributedSampler` permutation (seeded
    by ``seed + epoch``, identical for every world size) cut into per-rank batches of
    ``batch_size / world_size``. The union over ranks of batch k is batch k of a single process."""
    sampler = DistributedSampler(range(n), num_replicas=dist.world_size, rank=dist.rank,
                                 shuffle=True, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    idx = list(sampler)
    b = batch_size // dist.world_size
    return [idx[i:i + b] for i in range(0, len(idx), b)]


def repeat_by_source(records: Sequence[CrystalRecord], repeats: dict[str, int] | None) -> list[CrystalRecord]:
    """``records`` with each structure of source S listed ``repeats[S]`` times (others once), in
    the original order (the epoch's shuffle mixes them).

    >>> from dosmatgen.data.schema import CrystalRecord
    >>> cell = [[3, 0, 0], [0, 3, 0], [0, 0, 3]]
    >>> recs = [CrystalRecord(i, [14], [[0, 0, 0]], cell) for i in ("builtin-a", "mp20-mp-1")]
    >>> [r.structure_id for r in repeat_by_source(recs, {"mp20": 3})]
    ['builtin-a', 'mp20-mp-1', 'mp20-mp-1', 'mp20-mp-1']
    """
    from dosmatgen.data.split import record_source

    if not repeats:
        return list(records)
    return [r for r in records for _ in range(repeats.get(record_source(r.structure_id), 1))]


def _scalars(out: dict[str, torch.Tensor]) -> dict[str, float]:
    vals = {}
    for k, v in out.items():
        if torch.is_tensor(v) and v.numel() == 1:
            vals[k] = float(v.detach().float().item())
        elif isinstance(v, (int, float)):
            vals[k] = float(v)
    return vals


def _num_graphs(batch: Any) -> int:
    n = getattr(batch, "num_graphs", None)
    return int(n) if n is not None else 1


def _write_metrics(out_dir: Path, history: list[dict[str, Any]]) -> None:
    """``metrics.jsonl`` and ``metrics.csv`` (columns in order of first appearance), one row per epoch."""
    with atomic_write(out_dir / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(row, sort_keys=True) + "\n" for row in history)
    with atomic_write(out_dir / "metrics.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in history for k in row)))
        writer.writeheader()
        writer.writerows(history)


def data_fingerprint(train_records: Sequence[CrystalRecord], val_records: Sequence[CrystalRecord]) -> str:
    """Short hash of the training and validation ids (in order): a resumed run must see the same
    data, or its batches would silently differ."""
    h = hashlib.sha1()
    for part in (train_records, val_records):
        h.update(("\n".join(r.structure_id for r in part) + "\x00").encode())
    return h.hexdigest()[:16]


def _check_resumable(ck: dict[str, Any], kind: str, model_cfg: dict[str, Any], cfg: TrainConfig,
                     standardiser: DOSStandardiser | None, path: Path, fingerprint: str) -> None:
    old_fp = ck["extra"].get("data_fingerprint")
    if old_fp is not None and old_fp != fingerprint:
        raise ConfigError(f"cannot resume {path}: it was trained on other training/validation "
                          "structures (different split or store); use another --out directory")
    if ck["kind"] != kind:
        raise ConfigError(f"{path} was written for model kind {ck['kind']!r}, not {kind!r}; "
                          "use another --out directory or delete it to start afresh")
    if ck["config"] != model_cfg:
        diff = _differing_keys(ck["config"], model_cfg)
        raise ConfigError(f"{path} was written with a different model config (differs in {diff}); "
                          "use another --out directory or delete it to start afresh")
    old = ck["extra"].get("train_config", {})
    changed = sorted(k for k, v in cfg.to_dict().items()
                     if k not in RESUMABLE_CHANGES and k in old and old[k] != v)
    if changed:
        detail = ", ".join(f"{k}: {old[k]!r} -> {getattr(cfg, k)!r}" for k in changed)
        raise ConfigError(f"cannot resume {path}: training options changed ({detail}); "
                          "use another --out directory or delete it to start afresh")
    if not _same_standardiser(ck, standardiser):
        raise ConfigError(f"cannot resume {path}: the DOS standardiser differs from the one it was "
                          "trained with")


def _differing_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The keys whose values differ between two config dicts (a key missing on one side counts)."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _same_standardiser(ck: dict[str, Any], standardiser: DOSStandardiser | None) -> bool:
    """Whether checkpoint ``ck`` was trained with ``standardiser`` (both absent counts as the same)."""
    old = ck.get("standardiser")
    new = None if standardiser is None else standardiser.to_dict()
    if old is None or new is None:
        return old is None and new is None
    return old["mean"] == new["mean"] and old["std"] == new["std"]


def train(kind: str, model_config: dict[str, Any], train_records: Sequence[CrystalRecord],
          val_records: Sequence[CrystalRecord], standardiser: DOSStandardiser | None,
          cfg: TrainConfig, out_dir: str | Path, *, resume: str = "auto",
          callback: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Train a network of factory ``kind`` and return the path of its final checkpoint
    (``out_dir/last.pt``).

    Args:
        kind: factory kind ("diffusion", "regressor", "surrogate").
        model_config: the architecture's config dict (``build_model(kind, model_config)``).
        train_records, val_records: labelled crystals; an empty validation set makes the training
            loss drive the scheduler and ``best.pt``.
        standardiser: DOS standardisation (fitted on the training split) applied to every batch.
        cfg: optimisation settings.
        out_dir: run directory (``last.pt``, ``best.pt``, ``metrics.csv``, ``metrics.jsonl``,
            ``train_config.json``).
        resume: "auto" continues from ``out_dir/last.pt`` when present, "require" insists on it,
            "never" starts afresh and overwrites.
        callback: called on every rank after each optimiser step with
            ``{"step", "epoch", "loss", ...}`` (tests, custom logging).

    Raises:
        TrainingInterrupted: after Ctrl-C/SIGTERM, once ``last.pt`` is saved.
        ConfigError: bad options, or ``last.pt`` belongs to a different run.
        DataError: empty training set, or a non-finite loss.
    """
    if resume not in ("auto", "require", "never"):
        raise ConfigError(f"resume must be 'auto', 'require' or 'never', got {resume!r}")
    if len(train_records) == 0:
        raise DataError("the training split is empty")
    train_records = repeat_by_source(with_supercells(train_records, cfg.supercell_max_atoms, cfg.seed),
                                     cfg.source_repeats)
    out_dir = Path(out_dir)
    device = resolve_device(cfg.device)
    dist, device = setup_distributed(device)
    try:
        with deterministic_algorithms(cfg.deterministic):
            last = Trainer(kind, model_config, train_records, val_records, standardiser, cfg, out_dir, device,
                           dist, callback).run(resume)
    except BaseException:
        if dist.owns_group:  # no barrier here: a peer may never reach it
            torch.distributed.destroy_process_group()
        raise
    if dist.owns_group:
        # every rank leaves together: a rank that tears down its gloo pairs while rank 0 still
        # writes the checkpoint can make rank 0's transport thread abort the process
        dist.barrier()
        torch.distributed.destroy_process_group()
    return last


class Trainer:
    """One run of :func:`train` (recipe and files: the module docstring). ``__init__`` builds the
    model (seeded), Adam, the plateau scheduler, the EMA and the datasets; :meth:`run` resumes, then
    trains epoch by epoch (:meth:`run_epoch`, :meth:`train_step`, :meth:`end_epoch`) to the end."""

    def __init__(self, kind: str, model_config: dict[str, Any], train_records: Sequence[CrystalRecord],
                 val_records: Sequence[CrystalRecord], standardiser: DOSStandardiser | None, cfg: TrainConfig,
                 out_dir: Path, device: torch.device, dist: DistContext,
                 callback: Callable[[dict[str, Any]], None] | None = None) -> None:
        from dosmatgen.model.batch import RecordDataset, collate_records
        from dosmatgen.model.factory import build_model

        if cfg.batch_size % dist.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {dist.world_size} "
                              "processes of this launch")
        self.kind, self.cfg, self.standardiser, self.out_dir = kind, cfg, standardiser, out_dir
        self.device, self.dist, self.callback = device, dist, callback
        self.last_path, self.best_path, self.final_path = out_dir / LAST, out_dir / BEST, out_dir / FINAL
        torch.manual_seed(cfg.seed)
        self.model = build_model(kind, model_config)
        self.model_cfg = json.loads(json.dumps(self.model.config, default=str))
        if cfg.init_weights is not None:
            self.load_initial_weights(Path(cfg.init_weights))
        self.model.to(device)
        # foreach: one multi-tensor kernel per update instead of one per parameter (also on CPU)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                          foreach=True)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience, min_lr=cfg.min_lr)
        self.ema = _EMA(self.model, cfg.ema_decay) if cfg.ema_decay else None
        self.net: torch.nn.Module = _LossModule(self.model)
        self.fingerprint = data_fingerprint(train_records, val_records)
        self.state: dict[str, Any] = {"epoch": 0, "step": 0, "batch_in_epoch": 0, "partial": {}, "history": [],
                                      "best_val_loss": math.inf, "finished": False}
        self.train_ds = RecordDataset(list(train_records), standardiser)
        self.val_ds = RecordDataset(list(val_records), standardiser) if len(val_records) else None
        self.collate = collate_records
        self.gen = torch.Generator(device=device)
        self.show = cfg.progress and dist.is_main
        self.autocast = ((lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if cfg.bf16
                         else contextlib.nullcontext)

    def load_initial_weights(self, path: Path) -> None:
        """Fine-tuning: copy the inference weights of checkpoint ``path`` (``cfg.init_weights``) into
        the new model. A resumed run then replaces them with its own ``last.pt``."""
        ck = read_checkpoint(path, map_location="cpu")
        if ck["kind"] != self.kind:
            raise ConfigError(f"init weights {path} are of a {ck['kind']!r} model, not {self.kind!r}")
        if ck["config"] != self.model_cfg:
            raise ConfigError(f"init weights {path} have another model config "
                              f"(differs in {_differing_keys(ck['config'], self.model_cfg)})")
        if not _same_standardiser(ck, self.standardiser):
            raise ConfigError(f"init weights {path} were trained with another DOS standardiser; give "
                              "--standardiser the one inside that checkpoint")
        self.model.load_state_dict(ck["state_dict"])

    def resume(self, mode: str) -> None:
        """Continue from ``last.pt`` when it exists and ``mode`` is "auto" or "require" (which
        insists on it): weights, EMA, optimiser, scheduler, step bookkeeping and rank 0's torch RNG."""
        if mode == "require" and not self.last_path.exists():
            raise ConfigError(f"--resume given but {self.last_path} does not exist")
        if mode == "never" or not self.last_path.exists():
            return
        ck = read_checkpoint(self.last_path, map_location="cpu")
        _check_resumable(ck, self.kind, self.model_cfg, self.cfg, self.standardiser, self.last_path,
                         self.fingerprint)
        extra = ck["extra"]
        self.model.load_state_dict(extra.get("raw_state_dict") or ck["state_dict"])
        if self.ema is not None:
            self.ema.shadow = {k: v.to(self.device).clone() for k, v in ck["state_dict"].items()}
        self.optimizer.load_state_dict(extra["optimizer"])
        self.scheduler.load_state_dict(extra["scheduler"])
        for k in self.state:
            self.state[k] = extra.get(k, self.state[k])
        if not self.dist.is_main:
            return
        if extra.get("world_size", 1) != self.dist.world_size:
            warnings.warn(f"resuming a {extra.get('world_size')}-process run with {self.dist.world_size} "
                          "processes: the data split over ranks changes, results will differ slightly")
        if "torch" in extra.get("rng", {}):
            torch.set_rng_state(extra["rng"]["torch"])
        print(f"resuming {self.last_path}: epoch {self.state['epoch']}, step {self.state['step']}", file=sys.stderr)

    def write_run_config(self) -> None:
        """``train_config.json``: kind, model config, TrainConfig, world size and split sizes (rank 0)."""
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_save_json(self.out_dir / "train_config.json",
                             {"kind": self.kind, "model": self.model_cfg, "train": self.cfg.to_dict(),
                              "world_size": self.dist.world_size, "n_train": len(self.train_ds),
                              "n_val": len(self.val_ds or [])})

    def wrap_for_ddp(self) -> None:
        """Route the loss through DistributedDataParallel when several processes train."""
        if self.dist.enabled:
            # a model whose loss may leave parameters out of the graph sets this attribute to True
            unused = bool(getattr(self.model, "ddp_find_unused_parameters", False))
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=unused)

    def checkpoint(self, path: Path, finished: bool = False, full: bool = True) -> None:
        """Save the inference weights (the EMA's when kept) and the bookkeeping to ``path``; ``full``
        adds what a resume needs (optimiser, scheduler, partial epoch, RNG, raw weights). Rank 0
        writes; every rank waits so that none races ahead of a file it may read."""
        if self.dist.is_main:
            state, ema = self.state, self.ema
            extra = {"epoch": state["epoch"], "step": state["step"], "best_val_loss": state["best_val_loss"],
                     "train_config": self.cfg.to_dict(), "world_size": self.dist.world_size, "finished": finished,
                     "history": state["history"], "data_fingerprint": self.fingerprint}
            if state["history"]:
                extra["val_loss"] = state["history"][-1].get("val_loss")
                extra["train_loss"] = state["history"][-1].get("train_loss")
            if full:
                extra.update({"batch_in_epoch": state["batch_in_epoch"], "partial": state["partial"],
                              "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                              "rng": {"torch": torch.get_rng_state()}})
                if ema is not None:
                    extra["raw_state_dict"] = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            save_checkpoint(path, self.model, self.kind, self.standardiser, extra,
                            state_dict=ema.shadow if ema is not None else None)
        self.dist.barrier()

    def validate(self) -> dict[str, float]:
        """Mean validation losses (``val_*``; the EMA weights when kept) with fixed noise seeded per
        rank, averaged over crystals of every rank; empty without a validation set."""
        if self.val_ds is None:
            return {}
        dist, per_rank = self.dist, self.cfg.batch_size // self.dist.world_size
        idx = list(range(dist.rank, len(self.val_ds), dist.world_size))
        batches = [idx[i:i + per_rank] for i in range(0, len(idx), per_rank)]
        loader = DataLoader(self.val_ds, batch_sampler=batches, collate_fn=self.collate,
                            num_workers=self.cfg.num_workers)
        self.gen.manual_seed(_mix(self.cfg.seed, 7919, dist.rank))
        sums: dict[str, float] = {}
        self.model.eval()
        with self.ema.swapped_in(self.model) if self.ema is not None else contextlib.nullcontext(), torch.no_grad():
            for batch in loader:
                batch = batch.to(self.device)
                with self.autocast():
                    _accumulate(sums, _scalars(self.model.loss(batch, generator=self.gen)), _num_graphs(batch))
        self.model.train()
        means, n, _ = _mean_over_ranks(dist, sums)
        return {f"val_{k}": v for k, v in means.items()} if n > 0 else {}

    def train_step(self, batch: Any, epoch: int) -> dict[str, float]:
        """One optimiser step with the noise of (seed, rank, step): ``model.loss`` (eq. A11 for the
        joint diffusion), backward, clipping by value, Adam, EMA; returns the scalar losses."""
        cfg, step = self.cfg, self.state["step"]
        self.gen.manual_seed(_mix(cfg.seed, self.dist.rank, step))
        with self.autocast():
            out = self.net(batch, self.gen)
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_value_(self.model.parameters(), cfg.grad_clip, foreach=True)
        vals = _scalars(out)
        if not math.isfinite(vals["loss"]):
            raise DataError(f"training loss became {vals['loss']} at epoch {epoch + 1}, step {step + 1}; lower "
                            f"the learning rate or check the data (last good state: {self.last_path})")
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return vals

    def run_epoch(self, stop: StopFlag) -> str | None:
        """Train the rest of the current epoch (from ``batch_in_epoch``, with the running sums kept in
        the state), then :meth:`end_epoch` unless stopped mid-epoch; returns why the run stops early
        ("signal" on any rank, "max_steps") or None."""
        from tqdm.auto import tqdm

        cfg, state = self.cfg, self.state
        epoch, start = state["epoch"], state["batch_in_epoch"]
        batches = epoch_batches(len(self.train_ds), cfg.batch_size, cfg.seed, epoch, self.dist)
        loader = DataLoader(self.train_ds, batch_sampler=batches[start:], collate_fn=self.collate,
                            num_workers=cfg.num_workers)
        sums: dict[str, float] = dict(state["partial"])
        t0, graphs_seen, reason = time.perf_counter(), 0, None
        bar = tqdm(total=len(batches), initial=start, desc=f"epoch {epoch + 1}", unit="batch", leave=False,
                   disable=not self.show, dynamic_ncols=True)
        for batch in loader:
            batch = batch.to(self.device)
            vals = self.train_step(batch, epoch)
            g = _num_graphs(batch)
            _accumulate(sums, vals, g)
            graphs_seen += g
            state["step"] += 1
            state["batch_in_epoch"] += 1
            state["partial"] = dict(sums)
            for b in (bar, self.lines):
                b.set_postfix(loss=f"{vals['loss']:.4f}")
                b.update(1)
            if self.callback is not None:
                self.callback({"step": state["step"], "epoch": epoch, **vals})
            if self.dist.any_flag(stop.raised):
                reason = "signal"
            elif cfg.max_steps is not None and state["step"] >= cfg.max_steps:
                reason = "max_steps"
            if reason is not None:
                break
        bar.close()
        if reason is None or state["batch_in_epoch"] == len(batches):  # else resumed later
            self.end_epoch(sums, graphs_seen, time.perf_counter() - t0, reason)
        return reason

    def end_epoch(self, sums: dict[str, float], graphs_seen: int, elapsed: float, reason: str | None) -> None:
        """Close an epoch: its metrics row (training means, validation, throughput), the plateau
        scheduler on the validation loss (else the training loss), ``best.pt`` when that improved,
        ``last.pt`` every ``checkpoint_every`` epochs, at the last epoch and before an early stop."""
        state = self.state
        means, _, graphs = _mean_over_ranks(self.dist, sums, float(graphs_seen))
        row: dict[str, Any] = {"epoch": state["epoch"] + 1, "step": state["step"],
                               "lr": self.optimizer.param_groups[0]["lr"]}
        row.update({f"train_{k}": v for k, v in means.items()})
        row.update(self.validate())
        row["crystals_per_s"] = graphs / elapsed if elapsed > 0 else float("nan")
        row["epoch_seconds"] = elapsed
        monitor = row.get("val_loss", row.get("train_loss"))
        self.scheduler.step(monitor)
        state["history"].append(row)
        state.update(epoch=state["epoch"] + 1, batch_in_epoch=0, partial={})
        improved = monitor < state["best_val_loss"]
        if improved:
            state["best_val_loss"] = monitor
        if self.dist.is_main:
            _write_metrics(self.out_dir, state["history"])
        if improved:
            self.checkpoint(self.best_path, full=False)
        done = state["epoch"] >= self.cfg.epochs
        if state["epoch"] % self.cfg.checkpoint_every == 0 or done or reason is not None:
            self.checkpoint(self.last_path, finished=done)
        self.epoch_bar.update(1)
        self.epoch_bar.set_postfix(loss=f"{row.get('train_loss', float('nan')):.4f}",
                                   val=f"{row.get('val_loss', float('nan')):.4f}", lr=f"{row['lr']:.1e}")

    def finish(self, reason: str | None) -> None:
        """After the last epoch or an early stop: ``last.pt`` of a partial epoch, ``best.pt`` of a
        run that ``max_steps`` ended before its first validation, :class:`TrainingInterrupted` after
        a signal, else ``final.pt``."""
        if reason is not None and self.state["batch_in_epoch"] > 0:
            self.checkpoint(self.last_path)
        if reason == "max_steps" and not self.best_path.exists():
            # no validation yet: the final weights are the best known (a resumed run overwrites
            # this at its first validation, exactly as an uninterrupted one would write it)
            self.checkpoint(self.best_path, full=False)
        if reason == "signal":
            raise TrainingInterrupted(f"training stopped by signal at step {self.state['step']}; "
                                      f"state saved to {self.last_path}")
        self.checkpoint(self.final_path, finished=True, full=False)

    def run(self, resume: str) -> Path:
        """Resume (``resume``: "auto", "require", "never"), train to the end, return ``last.pt``."""
        from tqdm.auto import tqdm

        self.resume(resume)
        self.write_run_config()
        self.wrap_for_ddp()
        state, cfg = self.state, self.cfg
        if state["epoch"] >= cfg.epochs or (cfg.max_steps is not None and state["step"] >= cfg.max_steps):
            if self.dist.is_main:
                print(f"{self.last_path} already has {state['epoch']} epochs / {state['step']} steps; "
                      "nothing to do", file=sys.stderr)
            if not self.final_path.exists():  # a run finished before final.pt existed
                self.checkpoint(self.final_path, finished=True, full=False)
            return self.last_path
        self.epoch_bar = tqdm(total=cfg.epochs, initial=state["epoch"], desc=f"train {self.kind}", unit="epoch",
                              disable=not self.show, dynamic_ncols=True)
        steps = cfg.epochs * len(epoch_batches(len(self.train_ds), cfg.batch_size, cfg.seed, 0, self.dist))
        self.lines = Lines(total=min(steps, cfg.max_steps or steps), desc=f"train {self.kind}", unit="steps",
                           initial=state["step"], disable=cfg.progress or not self.dist.is_main)
        reason = None
        self.model.train()
        with StopFlag() as stop:
            while reason is None and state["epoch"] < cfg.epochs:
                reason = self.run_epoch(stop)
        self.epoch_bar.close()
        self.lines.close()
        self.finish(reason)
        return self.last_path


def _accumulate(sums: dict[str, float], vals: dict[str, float], graphs: int) -> None:
    """Add a batch's mean losses, weighted by its ``graphs`` crystals, to ``sums`` (``_n``: the weight)."""
    for k, v in vals.items():
        sums[k] = sums.get(k, 0.0) + v * graphs
    sums["_n"] = sums.get("_n", 0.0) + graphs


def _mean_over_ranks(dist: DistContext, sums: dict[str, float],
                     extra: float = 0.0) -> tuple[dict[str, float], float, float]:
    """(per-crystal means of the :func:`_accumulate` sums, crystal count, ``extra`` summed), all over
    every rank; a rank with an empty shard contributes zeros."""
    keys = _agree_keys(dist, sorted(k for k in sums if k != "_n"))
    totals = dist.all_sum([sums.get(k, 0.0) for k in keys] + [sums.get("_n", 0.0), extra])
    n = totals[-2]
    return {k: totals[i] / max(n, 1.0) for i, k in enumerate(keys)}, n, totals[-1]


def _agree_keys(dist: DistContext, keys: list[str]) -> list[str]:
    """The union of metric names over ranks (identical order everywhere)."""
    if not dist.enabled:
        return keys
    gathered: list[Any] = [None] * dist.world_size
    torch.distributed.all_gather_object(gathered, keys)
    return sorted({k for ks in gathered for k in ks})


__all__ = ["TrainConfig", "TrainingInterrupted", "train", "epoch_batches",
           "DistContext", "setup_distributed", "data_fingerprint", "LAST", "BEST", "FINAL"]
