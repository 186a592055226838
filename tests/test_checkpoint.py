"""Checkpoints: round trip, version stamp, and clear errors for broken or foreign files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dosmatgen.checkpoint import code_version, load_model, read_checkpoint, save_checkpoint
from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.errors import CheckpointError
from dosmatgen.model import factory


class ToyNet(torch.nn.Module):
    """Smallest network obeying the factory contract (from_config / config / loss)."""

    def __init__(self, width: int = 3, tag: str = "a") -> None:
        super().__init__()
        self.width, self.tag = width, tag
        self.lin = torch.nn.Linear(width, 2)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, config: dict) -> "ToyNet":
        return cls(**config)

    @property
    def config(self) -> dict:
        return {"width": self.width, "tag": self.tag}

    def loss(self, batch, generator=None):
        return {"loss": self.lin.weight.square().sum()}


@pytest.fixture
def toy_kind(monkeypatch):
    monkeypatch.setitem(factory.MODEL_KINDS, "toy", f"{ToyNet.__module__}:ToyNet")
    return "toy"


@pytest.fixture
def std():
    rng = np.random.default_rng(0)
    return DOSStandardiser.fit([rng.random((3, 400)), rng.random((2, 400))])


def test_round_trip(tmp_path, toy_kind, std):
    torch.manual_seed(1)
    net = ToyNet(width=5, tag="b")
    net.count += 3
    path = save_checkpoint(tmp_path / "ck.pt", net, toy_kind, std, {"epoch": 7, "step": 70, "junk": [1, 2]})
    model, std2, meta = load_model(path)
    assert isinstance(model, ToyNet) and model.width == 5 and model.tag == "b"
    assert not model.training
    for k, v in net.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    np.testing.assert_allclose(std2.mean, std.mean)
    np.testing.assert_allclose(std2.std, std.std)
    assert meta["kind"] == "toy" and meta["epoch"] == 7 and meta["step"] == 70
    assert "junk" not in meta  # only the small, known entries of extra
    assert meta["code"]["dosmatgen"] == code_version()["dosmatgen"]
    assert meta["code"]["torch"] == str(torch.__version__)
    raw = read_checkpoint(path)
    assert raw["extra"]["junk"] == [1, 2]
    assert list(tmp_path.iterdir()) == [tmp_path / "ck.pt"]  # no temporary files left behind


def test_no_standardiser_and_explicit_weights(tmp_path, toy_kind):
    net = ToyNet()
    other = {k: torch.full_like(v, 2) for k, v in net.state_dict().items()}
    save_checkpoint(tmp_path / "ck.pt", net, toy_kind, None, state_dict=other)
    model, std, _ = load_model(tmp_path / "ck.pt")
    assert std is None
    assert torch.all(model.lin.weight == 2)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.pt")


def test_empty_file(tmp_path):
    (tmp_path / "e.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_model(tmp_path / "e.pt")


def test_truncated_file(tmp_path, toy_kind, std):
    path = save_checkpoint(tmp_path / "ck.pt", ToyNet(), toy_kind, std)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_model(path)


def test_garbage_file(tmp_path):
    (tmp_path / "g.pt").write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_model(tmp_path / "g.pt")


def test_foreign_torch_file(tmp_path):
    torch.save({"model": torch.nn.Linear(2, 2).state_dict()}, tmp_path / "f.pt")
    with pytest.raises(CheckpointError, match="not a dosmatgen checkpoint"):
        load_model(tmp_path / "f.pt")
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="not a dosmatgen checkpoint"):
        load_model(tmp_path / "t.pt")


def test_pickled_code_is_refused(tmp_path):
    """weights_only loading: a file that needs arbitrary classes is refused, not executed."""
    torch.save({"format": "dosmatgen-checkpoint", "obj": ToyNet()}, tmp_path / "p.pt")
    with pytest.raises(CheckpointError, match="not unpickled"):
        load_model(tmp_path / "p.pt")


def test_unknown_kind_and_mismatched_weights(tmp_path, toy_kind, std):
    path = save_checkpoint(tmp_path / "ck.pt", ToyNet(), toy_kind, std)
    payload = read_checkpoint(path)
    payload["kind"] = "no-such-kind"
    torch.save(payload, tmp_path / "k.pt")
    with pytest.raises(CheckpointError, match="unknown model kind"):
        load_model(tmp_path / "k.pt")
    payload = read_checkpoint(path)
    payload["config"]["width"] = 4  # architecture no longer fits the weights
    torch.save(payload, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_model(tmp_path / "w.pt")
    payload = read_checkpoint(path)
    payload["config"]["bogus"] = 1
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="config does not fit"):
        load_model(tmp_path / "c.pt")


def test_newer_format_refused(tmp_path, toy_kind):
    path = save_checkpoint(tmp_path / "ck.pt", ToyNet(), toy_kind, None)
    payload = read_checkpoint(path)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "n.pt")
    with pytest.raises(CheckpointError, match="upgrade"):
        load_model(tmp_path / "n.pt")


def test_failed_save_keeps_old_file(tmp_path, toy_kind):
    path = save_checkpoint(tmp_path / "ck.pt", ToyNet(tag="old"), toy_kind, None)
    before = path.read_bytes()
    bad = ToyNet()
    bad.tag = object()  # config no longer serialisable -> save must fail without touching ck.pt
    with pytest.raises(CheckpointError):
        save_checkpoint(path, bad, toy_kind, None)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]
