"""DistributedDataParallel on CPU (gloo, 2 processes): with the same global batch the loss curve
and the final weights equal the single-process run; only rank 0 writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from dosmatgen.checkpoint import read_checkpoint
from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.model import factory
from dosmatgen.training import TrainConfig, train

TINY_DIFFUSION = {"model": {"hidden_dim": 16, "num_layers": 1, "num_freqs": 2, "time_dim": 8},
                  "diffusion": {"timesteps": 20, "sigma_norm_samples": 200}}


def make_records(n: int, seed: int = 1) -> list[CrystalRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(1, 5))
        lat = np.eye(3) * rng.uniform(3, 5) + rng.normal(0, 0.2, (3, 3))
        out.append(CrystalRecord(f"d{i}", rng.integers(1, 30, k), rng.random((k, 3)), lat,
                                 rng.random((k, 400)).astype(np.float32)))
    return out


class DeterministicNet(torch.nn.Module):
    """No noise: loss = mean over crystals of the per-crystal squared error of a DOS summary."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.width = width
        self.emb = torch.nn.Embedding(101, width)
        self.mix = torch.nn.Linear(width + 3, width)
        self.out = torch.nn.Linear(width, 1)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @property
    def config(self):
        return {"width": self.width}

    def loss(self, batch, generator=None):
        feats = torch.cat([self.emb(batch.atom_types), batch.frac_coords], -1)
        per_atom = self.out(torch.tanh(self.mix(feats))).squeeze(-1)
        target = batch.dos[:, :50].mean(-1)
        err = torch.zeros(batch.num_graphs).index_add(0, batch.batch, (per_atom - target) ** 2)
        loss = (err / batch.num_atoms).mean()
        return {"loss": loss}


def _register_toy() -> None:
    factory.MODEL_KINDS["ddp-toy"] = f"{DeterministicNet.__module__}:DeterministicNet"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, kind: str, model_cfg: dict, train_recs, val_recs,
            std_dict: dict, cfg_dict: dict, out_dir: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                       "RANK": str(rank), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    _register_toy()
    train(kind, model_cfg, train_recs, val_recs, DOSStandardiser.from_dict(std_dict),
          TrainConfig.from_dict(cfg_dict), out_dir)


def run_both(tmp_path, kind, model_cfg, cfg: TrainConfig):
    recs = make_records(20)
    tr, va = recs[:16], recs[16:]
    std = DOSStandardiser.fit([r.dos for r in tr])
    _register_toy()
    torch.set_num_threads(1)
    try:
        train(kind, model_cfg, tr, va, std, cfg, tmp_path / "one")
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    torch.multiprocessing.spawn(_worker, nprocs=2, join=True,
                                args=(2, _free_port(), kind, model_cfg, tr, va, std.to_dict(), cfg.to_dict(),
                                      str(tmp_path / "two")))
    rows = [[json.loads(line) for line in open(tmp_path / d / "metrics.jsonl")] for d in ("one", "two")]
    return rows


def test_ddp_two_processes_match_one(tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-2, device="cpu", progress=False, seed=4)
    one, two = run_both(tmp_path, "ddp-toy", {"width": 8}, cfg)
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        assert a["step"] == b["step"]  # 16 crystals / global batch 8 = 2 steps per epoch
        np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-5)
        np.testing.assert_allclose(b["val_loss"], a["val_loss"], rtol=1e-5)
    assert two[0]["train_loss"] != two[-1]["train_loss"]  # it did train
    w1 = read_checkpoint(tmp_path / "one" / "last.pt")
    w2 = read_checkpoint(tmp_path / "two" / "last.pt")
    assert w2["extra"]["world_size"] == 2
    for k, v in w1["state_dict"].items():
        torch.testing.assert_close(w2["state_dict"][k], v, rtol=1e-5, atol=1e-6)
    # only rank 0 wrote: no stray temporary files from a second writer
    assert not [p for p in (tmp_path / "two").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_ddp_diffusion_runs_and_tracks_single_process(tmp_path):
    """The diffusion loss draws noise per rank, so the curves agree statistically, not exactly."""
    cfg = TrainConfig(epochs=2, batch_size=8, device="cpu", progress=False, seed=4)
    one, two = run_both(tmp_path, "diffusion", TINY_DIFFUSION, cfg)
    for a, b in zip(one, two):
        assert a["step"] == b["step"]
        assert np.isfinite(b["train_loss"]) and np.isfinite(b["val_loss"])
        assert abs(b["train_loss"] - a["train_loss"]) < 0.35 * a["train_loss"]


@pytest.mark.slow
def test_torchrun_cli(tmp_path):
    """The real launcher: ``torchrun --nproc_per_node 2 -m dosmatgen.cli train ...``."""
    from dosmatgen.data.store import save_records

    recs = make_records(12)
    save_records(tmp_path / "s.npz", recs)
    (tmp_path / "split.json").write_text(json.dumps({"train": [r.structure_id for r in recs[:10]],
                                                      "val": [r.structure_id for r in recs[10:]], "test": []}))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m", "dosmatgen.cli",
           "train", "--kind", "diffusion", "--store", str(tmp_path / "s.npz"), "--split",
           str(tmp_path / "split.json"), "--size", "tiny", "--epochs", "1", "--batch-size", "4",
           "--out", str(tmp_path / "run"), "--device", "cpu", "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    ck = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["extra"]["world_size"] == 2 and ck["extra"]["epoch"] == 1
