"""Trainer: config round trip, outputs, bit-identical resume (also after SIGTERM mid-epoch),
refusal to resume a different run, EMA, and the generic factory contract."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from dosmatgen.checkpoint import load_model, read_checkpoint
from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.errors import ConfigError, DataError
from dosmatgen.model import factory
from dosmatgen.training import TrainConfig, TrainingInterrupted, epoch_batches, train, DistContext
from factories import TINY_DIFFUSION, random_records

def make_records(n: int, seed: int = 0) -> list[CrystalRecord]:
    return random_records(n, seed, prefix="r")


@pytest.fixture(scope="module")
def data():
    recs = make_records(14)
    return recs[:12], recs[12:], DOSStandardiser.fit([r.dos for r in recs[:12]])


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=4, device="cpu", progress=False, checkpoint_every=1, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def history(path) -> list[dict]:
    rows = [json.loads(line) for line in open(path / "metrics.jsonl")]
    for r in rows:  # timings differ between runs
        r.pop("crystals_per_s"), r.pop("epoch_seconds")
    return rows


def assert_same_weights(a, b):
    sa, sb = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ---- config ---------------------------------------------------------------------------------------
def test_train_config_round_trip_and_errors():
    c = TrainConfig(epochs=5, ema_decay=0.99, max_steps=7)
    assert TrainConfig.from_dict(c.to_dict()) == c
    assert TrainConfig().batch_size == 256 and TrainConfig().lr == 1e-3
    assert (TrainConfig().lr_factor, TrainConfig().lr_patience, TrainConfig().min_lr) == (0.6, 30, 1e-4)
    assert TrainConfig().grad_clip == 0.5 and TrainConfig().ema_decay is None
    with pytest.raises(ConfigError, match="unknown training config key"):
        TrainConfig.from_dict({"epoch": 3})
    # YAML hands "1e-4" over as a string and 5.0 as a float: both are read as the field's type
    assert TrainConfig.from_dict({"lr": "1e-4", "epochs": 5.0, "max_steps": None}) == TrainConfig(lr=1e-4, epochs=5)
    with pytest.raises(ConfigError, match="epochs must be of type int"):
        TrainConfig.from_dict({"epochs": "many"})
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(ema_decay=1.5)


def test_epoch_batches_partition_global_batches():
    """The union over ranks of batch k equals batch k of one process, for every epoch."""
    one = epoch_batches(12, 4, seed=5, epoch=2, dist=DistContext())
    two = [epoch_batches(12, 4, 5, 2, DistContext(world_size=2, rank=r)) for r in range(2)]
    assert sorted(sum(one, [])) == list(range(12))
    assert len(one) == len(two[0]) == len(two[1]) == 3
    for k in range(3):
        assert sorted(one[k]) == sorted(two[0][k] + two[1][k])
    assert one != epoch_batches(12, 4, 5, 3, DistContext())  # reshuffled every epoch


# ---- training runs -------------------------------------------------------------------------------
def test_train_outputs_and_load(tmp_path, data):
    tr, va, std = data
    path = train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(epochs=2), tmp_path)
    assert path == tmp_path / "last.pt"
    names = {p.name for p in tmp_path.iterdir()}
    assert {"last.pt", "best.pt", "metrics.csv", "metrics.jsonl", "train_config.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["step"] == 6
    for key in ("train_loss", "train_loss_A", "train_loss_X", "train_loss_L", "val_loss", "lr"):
        assert np.isfinite(rows[-1][key]), key
    assert open(tmp_path / "metrics.csv").readline().startswith("epoch,step,lr,train_loss")
    model, std2, meta = load_model(path)
    assert meta["kind"] == "diffusion" and meta["epoch"] == 2 and meta["step"] == 6 and meta["finished"]
    np.testing.assert_allclose(std2.mean, std.mean)
    batch_loss = model.loss(__import__("dosmatgen.model.batch", fromlist=["x"]).CrystalBatch.from_records(va, std))
    assert torch.isfinite(batch_loss["loss"])
    best = read_checkpoint(tmp_path / "best.pt")["extra"]
    assert best["best_val_loss"] == min(r["val_loss"] for r in rows)


def test_resume_after_max_steps_is_identical(tmp_path, data):
    tr, va, std = data
    train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(), tmp_path / "a")
    # stop in the middle of epoch 2 (3 batches per epoch), then resume
    train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(max_steps=4), tmp_path / "b")
    ck = read_checkpoint(tmp_path / "b" / "last.pt")["extra"]
    assert ck["step"] == 4 and ck["epoch"] == 1 and ck["batch_in_epoch"] == 1 and not ck["finished"]
    train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(), tmp_path / "b")
    assert history(tmp_path / "a") == history(tmp_path / "b")
    assert_same_weights(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")
    assert_same_weights(tmp_path / "a" / "best.pt", tmp_path / "b" / "best.pt")
    # a finished run is not retrained; more epochs continue it
    train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(), tmp_path / "b")
    assert len(history(tmp_path / "b")) == 3
    train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(epochs=4), tmp_path / "b")
    assert len(history(tmp_path / "b")) == 4


def test_max_steps_inside_the_first_epoch_still_writes_best(tmp_path, data):
    """A smoke run capped below one epoch (3 batches here) must still leave the declared best.pt."""
    tr, va, std = data
    train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(max_steps=2), tmp_path)
    assert (tmp_path / "best.pt").exists()
    assert_same_weights(tmp_path / "best.pt", tmp_path / "last.pt")
    metrics = tmp_path / "metrics.jsonl"  # no epoch finished: no validation row is invented
    assert not metrics.exists() or history(tmp_path) == []


def test_sigterm_saves_and_resume_is_identical(tmp_path, data):
    tr, va, std = data
    train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(epochs=2), tmp_path / "a")

    def kill_at_step_2(info):
        if info["step"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted, match="step 2"):
        train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(epochs=2), tmp_path / "b", callback=kill_at_step_2)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    assert read_checkpoint(tmp_path / "b" / "last.pt")["extra"]["step"] == 2
    assert not (tmp_path / "b" / "final.pt").exists()  # an interrupted run has no final weights
    train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(epochs=2), tmp_path / "b", resume="require")
    assert history(tmp_path / "a") == history(tmp_path / "b")
    assert_same_weights(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")
    assert_same_weights(tmp_path / "b" / "final.pt", tmp_path / "b" / "last.pt")
    final = read_checkpoint(tmp_path / "b" / "final.pt")["extra"]
    assert final["finished"] and final["step"] == 6 and "optimizer" not in final


def test_resume_refuses_a_different_run(tmp_path, data):
    tr, va, std = data
    train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(max_steps=1), tmp_path)
    with pytest.raises(ConfigError, match="lr: 0.001 -> 0.01"):
        train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(lr=1e-2), tmp_path)
    other = {"model": dict(TINY_DIFFUSION["model"], hidden_dim=8), "diffusion": TINY_DIFFUSION["diffusion"]}
    with pytest.raises(ConfigError, match="different model config"):
        train("diffusion", other, tr, va, std, cfg(), tmp_path)
    with pytest.raises(ConfigError, match="kind"):
        train("regressor", TINY_DIFFUSION, tr, va, std, cfg(), tmp_path)
    std2 = DOSStandardiser(std.mean + 1, std.std)
    with pytest.raises(ConfigError, match="standardiser"):
        train("diffusion", TINY_DIFFUSION, tr, va, std2, cfg(), tmp_path)
    with pytest.raises(ConfigError, match="other training/validation structures"):
        train("diffusion", TINY_DIFFUSION, tr[:-1], va, std, cfg(), tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(), tmp_path / "new", resume="require")
    # resume="never" starts afresh in the same directory
    train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(lr=1e-2, epochs=1), tmp_path, resume="never")
    assert read_checkpoint(tmp_path / "last.pt")["extra"]["train_config"]["lr"] == 1e-2


def test_init_weights_fine_tunes_from_a_checkpoint(tmp_path, data):
    """init_weights starts from another run's weights: one step at a vanishing learning rate leaves
    them (nearly) as they were, where the same run from a random start is far from them (negative
    control); a checkpoint of another kind, architecture or standardiser is refused."""
    tr, va, std = data
    train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(epochs=2), tmp_path / "a")
    source = read_checkpoint(tmp_path / "a" / "best.pt")["state_dict"]

    def distance(run):
        got = read_checkpoint(run / "final.pt")["state_dict"]
        return max(float((got[k] - source[k]).abs().max()) for k in source)

    tuned = cfg(max_steps=1, lr=1e-12, seed=5, init_weights=str(tmp_path / "a" / "best.pt"))
    train("diffusion", TINY_DIFFUSION, va, tr[:2], std, tuned, tmp_path / "tuned")
    train("diffusion", TINY_DIFFUSION, va, tr[:2], std, cfg(max_steps=1, lr=1e-12, seed=5), tmp_path / "fresh")
    assert distance(tmp_path / "tuned") < 1e-6 < 1e-2 < distance(tmp_path / "fresh")
    other = {"model": dict(TINY_DIFFUSION["model"], hidden_dim=8), "diffusion": TINY_DIFFUSION["diffusion"]}
    with pytest.raises(ConfigError, match="another model config"):
        train("diffusion", other, va, tr[:2], std, tuned, tmp_path / "b")
    with pytest.raises(ConfigError, match="not 'regressor'"):
        train("regressor", TINY_DIFFUSION, va, tr[:2], std, tuned, tmp_path / "c")
    with pytest.raises(ConfigError, match="another DOS standardiser"):
        train("diffusion", TINY_DIFFUSION, va, tr[:2], DOSStandardiser(std.mean + 1, std.std), tuned, tmp_path / "d")


def test_ema_and_regressor_resume(tmp_path, data):
    tr, va, std = data
    c = cfg(epochs=2, ema_decay=0.9)
    train("regressor", TINY_DIFFUSION, tr, va, std, c, tmp_path / "a")
    train("regressor", TINY_DIFFUSION, tr, va, std, cfg(epochs=2, ema_decay=0.9, max_steps=2), tmp_path / "b")
    train("regressor", TINY_DIFFUSION, tr, va, std, c, tmp_path / "b")
    assert_same_weights(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")
    ck = read_checkpoint(tmp_path / "a" / "last.pt")
    raw, ema = ck["extra"]["raw_state_dict"], ck["state_dict"]
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)  # inference weights are the EMA
    assert_same_weights(tmp_path / "a" / "final.pt", tmp_path / "a" / "last.pt")  # final.pt: the EMA too
    (tmp_path / "b" / "final.pt").unlink()  # a run finished before final.pt existed gets it on rerun
    train("regressor", TINY_DIFFUSION, tr, va, std, c, tmp_path / "b")
    assert_same_weights(tmp_path / "b" / "final.pt", tmp_path / "a" / "final.pt")
    model, _, meta = load_model(tmp_path / "a" / "last.pt")
    assert meta["kind"] == "regressor"


# ---- the generic factory contract ------------------------------------------------------------------
class MeanDOSNet(torch.nn.Module):
    """Deterministic toy network: predicts each crystal's mean DOS value from its atom types."""

    def __init__(self, width: int = 4, nan: bool = False) -> None:
        super().__init__()
        self.width, self.nan = width, nan
        self.emb = torch.nn.Embedding(101, width)
        self.out = torch.nn.Linear(width, 1)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @property
    def config(self):
        return {"width": self.width, "nan": self.nan}

    def loss(self, batch, generator=None):
        per_atom = self.out(torch.tanh(self.emb(batch.atom_types))).squeeze(-1)
        target = batch.dos.mean(-1)
        err = torch.zeros(batch.num_graphs).index_add(0, batch.batch, (per_atom - target) ** 2)
        loss = (err / batch.num_atoms).mean()
        if self.nan:
            loss = loss * float("nan")
        return {"loss": loss, "mse": loss.detach()}


@pytest.fixture
def toy_kind(monkeypatch):
    monkeypatch.setitem(factory.MODEL_KINDS, "toy", f"{MeanDOSNet.__module__}:MeanDOSNet")
    return "toy"


def test_any_factory_model_trains(tmp_path, data, toy_kind):
    tr, va, std = data
    train(toy_kind, {"width": 4}, tr, va, std, cfg(epochs=6, lr=3e-2, lr_patience=1), tmp_path)
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert "val_mse" in rows[-1]
    model, _, meta = load_model(tmp_path / "best.pt")
    assert isinstance(model, MeanDOSNet) and meta["kind"] == "toy"


def test_plateau_scheduler_lowers_lr(tmp_path, data, toy_kind):
    tr, va, std = data
    train(toy_kind, {"width": 4}, tr, va, std, cfg(epochs=8, lr=1.0, lr_patience=0, lr_factor=0.5,
                                                   min_lr=0.1), tmp_path)
    lrs = [json.loads(line)["lr"] for line in open(tmp_path / "metrics.jsonl")]
    assert lrs[0] == 1.0 and min(lrs) < 1.0 and min(lrs) >= 0.1 - 1e-12


def test_nonfinite_loss_is_a_clear_error(tmp_path, data, toy_kind):
    tr, va, std = data
    with pytest.raises(DataError, match="loss became nan"):
        train(toy_kind, {"width": 4, "nan": True}, tr, va, std, cfg(), tmp_path)


def test_empty_training_set(tmp_path, data):
    _, va, std = data
    with pytest.raises(DataError, match="empty"):
        train("diffusion", TINY_DIFFUSION, [], va, std, cfg(), tmp_path)


def test_no_validation_set_uses_training_loss(tmp_path, data, toy_kind):
    tr, _, std = data
    train(toy_kind, {"width": 4}, tr, [], std, cfg(epochs=2), tmp_path)
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert "val_loss" not in rows[0]
    assert read_checkpoint(tmp_path / "best.pt")["extra"]["best_val_loss"] == min(r["train_loss"] for r in rows)


def test_bf16_autocast_and_workers(tmp_path, data):
    tr, va, std = data
    train("diffusion", TINY_DIFFUSION, tr, va, std, cfg(epochs=1, bf16=True, num_workers=1), tmp_path)
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert np.isfinite(rows[0]["train_loss"]) and np.isfinite(rows[0]["val_loss"])
    # weights stay float32 under autocast
    assert all(v.dtype == torch.float32 for v in read_checkpoint(tmp_path / "last.pt")["state_dict"].values()
               if v.is_floating_point())


def test_supercells_are_trained_on(tmp_path, data, toy_kind):
    """`train` with supercell_max_atoms also trains on the doubled cells (more crystals and steps
    per epoch); without it (negative control) on the crystals alone; the CLI flag reaches it."""
    from dosmatgen.cli import build_parser
    from dosmatgen.commands.train import resolve_configs

    tr, va, std = data
    n_small = sum(2 * r.num_atoms <= 4 for r in tr)
    assert 0 < n_small < len(tr)
    for name, m, n in (("plain", None, 12), ("super", 4, 12 + n_small)):
        train(toy_kind, {"width": 4}, tr, va, std, cfg(epochs=1, batch_size=1, supercell_max_atoms=m), tmp_path / name)
        meta = json.loads((tmp_path / name / "train_config.json").read_text())
        assert meta["n_train"] == n and meta["train"]["supercell_max_atoms"] == m
        assert read_checkpoint(tmp_path / name / "last.pt")["extra"]["step"] == n
    with pytest.raises(ConfigError, match="integer >= 2"):
        TrainConfig(supercell_max_atoms=0)
    args = build_parser().parse_args(["train", "--kind", "diffusion", "--store", "s.npz", "--split", "p.json",
                                      "--out", "o", "--supercells", "12"])
    assert resolve_configs(args)[1].supercell_max_atoms == 12


def test_source_repeats_weight_a_source_per_epoch(tmp_path, data, toy_kind):
    """mp20=3 makes each mp20 structure appear three times per epoch (more steps per epoch);
    prototypes stay once; without it (negative control) every structure appears once."""
    tr, va, std = data
    mixed = [CrystalRecord(("mp20-" if i < 2 else "builtin-") + r.structure_id, r.atomic_numbers, r.frac_coords,
                           r.lattice, r.dos) for i, r in enumerate(tr)]
    for name, repeats, n in (("plain", None, 12), ("rep", {"mp20": 3}, 16)):
        train(toy_kind, {"width": 4}, mixed, va, std, cfg(epochs=1, source_repeats=repeats), tmp_path / name)
        meta = json.loads((tmp_path / name / "train_config.json").read_text())
        assert meta["n_train"] == n and meta["train"]["source_repeats"] == repeats
        assert read_checkpoint(tmp_path / name / "last.pt")["extra"]["step"] == n // 4
    assert TrainConfig.from_dict({"source_repeats": {"mp20": 4}}).source_repeats == {"mp20": 4}
    with pytest.raises(ConfigError, match="unknown source 'real'"):
        TrainConfig(source_repeats={"real": 2})
    with pytest.raises(ConfigError, match="integer >= 1"):
        TrainConfig(source_repeats={"mp20": 0})
    from dosmatgen.cli import build_parser
    from dosmatgen.commands.train import parse_source_repeats

    base = ["train", "--kind", "diffusion", "--store", "s.npz", "--split", "p.json", "--out", "o"]
    for flags in (["--repeat-source", "mp20=4", "prototypes=1"],  # as the workflow renders several
                  ["--repeat-source", "mp20=4", "--repeat-source", "prototypes=1"]):
        args = build_parser().parse_args(base + flags)
        assert parse_source_repeats(args.repeat_source) == {"mp20": 4, "prototypes": 1}
