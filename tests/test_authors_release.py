"""Import of the authors' released CFG model (issue 14) on resources/reference_release, a genuine
miniature release written by their code: exact outputs, safe loading, bad input."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dosmatgen.checkpoint import load_model, read_checkpoint
from dosmatgen.cli import main
from dosmatgen.data.reference_json import read_reference_json
from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.errors import CheckpointError
from dosmatgen.model import authors_release
from dosmatgen.model.authors_release import import_release, safe_torch_load
from dosmatgen.model.batch import NoisyBatch

RELEASE = Path(__file__).resolve().parents[1] / "resources" / "reference_release"
CKPT = "epoch=4-step=5.ckpt"
#: The issue's bound for float32 agreement with expected_outputs.npz.
ATOL = 5e-5


@pytest.fixture(scope="module")
def imported():
    return import_release(RELEASE)


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(RELEASE / "expected_outputs.npz"))


def _outputs(model, e: dict, conditional: bool):
    t = lambda k: torch.tensor(e[k])  # noqa: E731
    m = e["z"].shape[0]
    mask = torch.full((m,), conditional)
    state = NoisyBatch(t("atom_types"), t("frac_coords"), t("lattices"), t("num_atoms"), t("node2graph"),
                       t("y_scaled"), mask)
    with torch.no_grad():
        out = model.raw(state, t("t"), mask)
    # theirs: coord_out = minus our normalised score (see authors_release)
    return {"type": out.eps_A.numpy(), "coord": -out.score_X.numpy(), "lattice": out.eps_L.numpy()}


def _max_error(model, e: dict) -> float:
    errs = []
    for name, cond in (("cond", True), ("uncond", False)):
        ours = _outputs(model, e, cond)
        errs += [np.abs(ours[k] - e[f"out_{name}_{k}"]).max() for k in ("type", "coord", "lattice")]
    return float(max(errs))


def test_reproduces_reference_outputs(imported, expected):
    scale = max(np.abs(expected[f"out_{n}_{k}"]).max() for n in ("cond", "uncond") for k in ("type", "coord", "lattice"))
    assert scale > 0.5  # outputs of order 1: the bound below is not vacuous
    assert _max_error(imported.model, expected) < ATOL
    # the conditional and unconditional passes really differ (the condition is read)
    assert np.abs(expected["out_cond_type"] - expected["out_uncond_type"]).max() > 100 * ATOL


def test_negative_control_without_frequency_fold(imported, expected, monkeypatch):
    """Mapping the Fourier columns without folding k = 0 into the bias is measurably wrong."""
    real = authors_release.map_weights

    def no_fold(sd, m):
        out = real(sd, m)
        for k in range(m.num_layers):
            out[f"net.backbone.layers.{k}.edge_geometry.bias"] = sd[f"decoder.csp_layer_{k}.edge_mlp.0.bias"].clone()
        return out

    monkeypatch.setattr(authors_release, "map_weights", no_fold)
    assert _max_error(import_release(RELEASE).model, expected) > 1e-3


def test_time_embedding_is_the_references(imported, expected):
    emb = imported.model.net.backbone.time_embedding(torch.tensor(expected["t"]))
    assert np.array_equal(emb.numpy(), expected["time_emb"])


def test_standardiser_is_the_releases(imported, expected):
    """Equal to the scaler file, which is the per-bin mean and population std + 1e-5 of the
    training atoms (recomputed here from train.json), and it turns y_raw into y_scaled."""
    train = read_reference_json(RELEASE / "data" / "mp_dos" / "train.json")
    refit = DOSStandardiser.fit([r.dos for r in train])
    assert np.allclose(imported.standardiser.mean, refit.mean, rtol=1e-9, atol=1e-12)
    assert np.allclose(imported.standardiser.std, refit.std, rtol=1e-9, atol=1e-12)
    assert np.abs(imported.standardiser.transform(expected["y_raw"]) - expected["y_scaled"]).max() < 1e-5


def test_schedule_tables_come_from_the_checkpoint(imported):
    raw = safe_torch_load(RELEASE / CKPT, "checkpoint")["state_dict"]
    sched = imported.model.schedule
    assert torch.equal(sched.score_norm[1:], raw["sigma_scheduler.sigmas_norm"][1:])
    assert torch.allclose(sched.alphas_cumprod, raw["beta_scheduler.alphas_cumprod"], rtol=0, atol=0)


def test_cli_import_round_trip_and_sampling(tmp_path, expected):
    out = tmp_path / "run"
    assert main(["import", "authors", "--release", str(RELEASE), "--out", str(out), "--authors-commit", "76c39f6"]) == 0
    payload = read_checkpoint(out / "best.pt")
    assert "optimizer" not in payload["extra"] and "imported_from" in payload["extra"]
    prov = payload["extra"]["imported_from"]
    assert prov["authors_commit"] == "76c39f6" and len(prov["sha256"][CKPT]) == 64
    model, std, meta = load_model(out / "best.pt")
    assert _max_error(model, expected) < ATOL
    assert np.array_equal(std.mean, DOSStandardiser.load(out / "standardiser.json").mean)
    # the imported model samples: two crystals from the prior, finite and of the right size
    from dosmatgen.model.batch import CrystalBatch
    from dosmatgen.generate.sampler import sample

    records = read_reference_json(RELEASE / "data" / "mp_dos" / "test.json")
    spec = CrystalBatch.from_records(records, std)
    result = sample(model, spec, steps=5, step_lr=5e-6, start_at_T=True, progress=False)
    assert result.num_atoms.tolist() == [r.num_atoms for r in records]
    assert torch.isfinite(result.frac_coords).all() and torch.isfinite(result.lattices).all()


def test_data_import_keeps_the_authors_split(tmp_path):
    store, split = tmp_path / "s.npz", tmp_path / "split.json"
    assert main(["data", "import-json", "--dir", str(RELEASE / "data" / "mp_dos"), "--out", str(store),
                 "--split-out", str(split)]) == 0
    from dosmatgen.data.split import load_split

    got = load_split(split)
    for part in ("train", "val", "test"):
        assert got[part] == [r.structure_id for r in read_reference_json(RELEASE / "data" / "mp_dos" / f"{part}.json")]


# ---- bad input: one line, exit 2, nothing written ------------------------------------------------
def _copy_release(tmp_path: Path) -> Path:
    dst = tmp_path / "release"
    shutil.copytree(RELEASE, dst, ignore=shutil.ignore_patterns("data", "expected_outputs.npz"))
    for p in dst.iterdir():
        p.chmod(0o644)
    return dst


def _edit_checkpoint(release: Path, edit) -> None:
    """Rewrite the checkpoint with its state_dict edited and no hyper_parameters (our stand-ins
    would pickle under our own names), so that the sizes come from hparams.yaml."""
    ckpt = safe_torch_load(release / CKPT, "checkpoint")
    edit(ckpt["state_dict"])
    (release / CKPT).chmod(0o644)
    torch.save({"state_dict": ckpt["state_dict"], "epoch": ckpt["epoch"]}, release / CKPT)


def _fails(tmp_path: Path, release: Path, capsys, expect: str) -> None:
    out = tmp_path / "out"
    assert main(["import", "authors", "--release", str(release), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expect in err, err
    assert not out.exists()


def test_bad_folder_without_or_with_two_checkpoints(tmp_path, capsys):
    rel = _copy_release(tmp_path)
    shutil.copy(rel / CKPT, rel / "other.ckpt")
    _fails(tmp_path, rel, capsys, "2 *.ckpt files")
    (rel / "other.ckpt").unlink()
    (rel / CKPT).unlink()
    _fails(tmp_path, rel, capsys, "no *.ckpt")


def test_edited_copy_still_imports(tmp_path, capsys):
    """Positive control for the edits below: rewriting the checkpoint unchanged imports fine."""
    rel = _copy_release(tmp_path)
    _edit_checkpoint(rel, lambda sd: None)
    assert main(["import", "authors", "--release", str(rel), "--out", str(tmp_path / "out")]) == 0


@pytest.mark.parametrize("edit, expect", [
    (lambda sd: sd.pop("decoder.type_out.bias"), "missing ['decoder.type_out.bias']"),
    (lambda sd: sd.update({"decoder.extra_head.weight": torch.zeros(3)}), "unexpected ['decoder.extra_head.weight']"),
    (lambda sd: sd.update({"decoder.type_out.weight": torch.zeros(50, 64)}), "has shape (50, 64)"),
    (lambda sd: sd.update({"sigma_scheduler.sigmas_norm": sd["sigma_scheduler.sigmas_norm"] * 3}), "sigmas_norm table"),
])
def test_bad_checkpoint_of_another_architecture(tmp_path, capsys, edit, expect):
    rel = _copy_release(tmp_path)
    _edit_checkpoint(rel, edit)
    _fails(tmp_path, rel, capsys, expect)


def test_bad_hparams_disagreeing(tmp_path, capsys):
    rel = _copy_release(tmp_path)
    hp = yaml.safe_load((rel / "hparams.yaml").read_text())
    hp["diffusion"]["model"]["hidden_dim"] = 32
    (rel / "hparams.yaml").write_text(yaml.safe_dump(hp))
    _fails(tmp_path, rel, capsys, "disagree at diffusion.model.hidden_dim")  # vs the checkpoint's own copy
    _edit_checkpoint(rel, lambda sd: None)  # now hparams.yaml alone describes the weights
    _fails(tmp_path, rel, capsys, "hparams and weights disagree")


def _save_as_authors_scaler(path: Path, means: torch.Tensor, stds: torch.Tensor) -> None:
    """torch.save an object of a class named dosmatgen.utils.data.StandardScalerTorch, as their code does."""
    module = types.ModuleType("dosmatgen.utils.data")

    class StandardScalerTorch:
        pass

    StandardScalerTorch.__module__ = "dosmatgen.utils.data"
    StandardScalerTorch.__qualname__ = "StandardScalerTorch"
    module.StandardScalerTorch = StandardScalerTorch
    names = ("dosmatgen.utils", "dosmatgen.utils.data")
    old = {n: sys.modules.get(n) for n in names}
    sys.modules["dosmatgen.utils"] = types.ModuleType("dosmatgen.utils")
    sys.modules["dosmatgen.utils.data"] = module
    try:
        obj = StandardScalerTorch()
        obj.means, obj.stds = means, stds
        path.chmod(0o644)
        torch.save(obj, path)
    finally:
        for n, m in old.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def test_bad_scaler_length(tmp_path, capsys):
    rel = _copy_release(tmp_path)
    _save_as_authors_scaler(rel / "prop_scaler.pt", torch.zeros(300, dtype=torch.float64),
                            torch.ones(300, dtype=torch.float64))
    _fails(tmp_path, rel, capsys, "holds 300 means")


def test_scaler_written_like_theirs_is_read(tmp_path):
    """Positive control for the scaler writer above: a right-length scaler imports and is used."""
    rel = _copy_release(tmp_path)
    _save_as_authors_scaler(rel / "prop_scaler.pt", torch.full((400,), 2.0, dtype=torch.float64),
                            torch.full((400,), 3.0, dtype=torch.float64))
    std = import_release(rel).standardiser
    assert np.all(std.mean == 2.0) and np.all(std.std == 3.0)


def test_bad_file_not_a_torch_pickle(tmp_path, capsys):
    rel = _copy_release(tmp_path)
    (rel / CKPT).chmod(0o644)
    (rel / CKPT).write_text("this is not a checkpoint\n")
    _fails(tmp_path, rel, capsys, "not a readable PyTorch file")


class Payload:
    """A class outside the allow-list: loading must refuse it, not run it."""

    def __reduce__(self):
        return (print, ("code ran during unpickling",))


def test_bad_pickle_naming_a_class_outside_the_allow_list(tmp_path, capsys):
    rel = _copy_release(tmp_path)
    (rel / "prop_scaler.pt").chmod(0o644)
    torch.save({"means": Payload()}, rel / "prop_scaler.pt")
    _fails(tmp_path, rel, capsys, "names the class print,")
    with pytest.raises(CheckpointError):
        safe_torch_load(rel / "prop_scaler.pt", "scaler file")
