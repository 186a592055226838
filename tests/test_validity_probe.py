"""experiments/validity_probe/validity_probe.py: per-channel guidance is CFG where it should be, and the report."""
from __future__ import annotations

import json

import pytest
import torch

from factories import write_workspace


@pytest.fixture
def probe(script):
    return script("experiments/validity_probe/validity_probe")


def _state(tmp_path):
    from dosmatgen.checkpoint import load_model
    from dosmatgen.model.batch import CrystalBatch, NoisyBatch

    recs, std = write_workspace(tmp_path, prefix="c")
    diffusion, _, _ = load_model(tmp_path / "diff.pt", "cpu")
    batch = CrystalBatch.from_records(recs[:3], std)
    gen = torch.Generator().manual_seed(0)
    t = torch.full((3,), 7, dtype=torch.long)
    state, _ = diffusion.schedule.noise(batch, t, gen, diffusion.model_cfg.max_z)
    assert isinstance(state, NoisyBatch)
    return diffusion, state, t


def test_channel_guidance_reproduces_cfg_and_the_unconditional_model(probe, tmp_path):
    diffusion, state, t = _state(tmp_path)
    with torch.no_grad():
        for got, want in ((probe.ChannelGuidance(1, 1).predict(diffusion, state, t), diffusion.eps_cfg(state, t, 1.0)),
                          (probe.ChannelGuidance(-1, -1).predict(diffusion, state, t),
                           diffusion.eps(state, t, torch.zeros_like(state.cond_mask)))):
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        split = probe.ChannelGuidance(1, -1).predict(diffusion, state, t)
        cfg = diffusion.eps_cfg(state, t, 1.0)
        unc = diffusion.eps(state, t, torch.zeros_like(state.cond_mask))
        torch.testing.assert_close(split.eps_A, cfg.eps_A, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(split.eps_L, unc.eps_L, rtol=1e-5, atol=1e-5)
        # negative control: the types channel of the unconditional model differs from CFG's
        assert not torch.allclose(unc.eps_A, cfg.eps_A, atol=1e-4)
        # above t_max the conditional model alone
        late = probe.ChannelGuidance(1, 1, t_max=3).predict(diffusion, state, t)
        torch.testing.assert_close(late.eps_L, diffusion.eps(state, t).eps_L, rtol=1e-5, atol=1e-5)


def test_variant_syntax(probe):
    g, t0 = probe.parse_variant("0.5,0")
    assert (g.omega_types, g.omega_geometry, g.t_max, t0) == (0.5, 0.0, None, None)
    for bad in ("1", "1,1,1,1", "a,b", "1,1@x"):
        with pytest.raises(probe.ConfigError, match="WA,WG"):
            probe.parse_variant(bad)


def test_report_and_bad_input(probe, tmp_path, capsys):
    write_workspace(tmp_path, prefix="c")
    common = ["--checkpoint", str(tmp_path / "diff.pt"), "--store", str(tmp_path / "s.npz"),
              "--split", str(tmp_path / "split.json"), "--steps", "4"]
    out = tmp_path / "probe.json"
    assert probe.main([*common, "--subset", "val", "test", "--variant", "1,1", "--variant", "1,1@10",
                       "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n_structures"] == 4 and set(report["variants"]) == {"1,1", "1,1@10"}
    for row in report["variants"].values():
        assert row["n"] == 4 and 0 <= row["validity"] <= 1 and sum(row["reasons"].values()) == 4
        assert sum(n for _, n in row["validity_by_atoms"].values()) == 4 and row["volume_ratio_median"] > 0
    # nothing selected, or a malformed variant: one line, exit 2, no report
    bad = tmp_path / "bad.json"
    assert probe.main([*common, "--source", "mp20", "--variant", "1,1", "--out", str(bad)]) == 2
    assert probe.main([*common, "--variant", "1;1", "--out", str(bad)]) == 2
    assert not bad.exists()
    assert capsys.readouterr().err.count("error:") == 2
