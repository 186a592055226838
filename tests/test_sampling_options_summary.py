"""experiments/sampling_options/sampling_options_summary.py: the options table is read from the metrics files as they are."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from dosmatgen.config import REPO_ROOT

_spec = importlib.util.spec_from_file_location("sampling_options_summary",
                                               REPO_ROOT / "experiments" / "sampling_options" / "sampling_options_summary.py")
summary = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summary)

NAMES = ("validity", "structure_match_rate", "composition_match_rate", "element_accuracy", "mae_gen_y")


def _write_metrics(folder: Path, validity_mp20: float, sizes_valid: list[tuple[int, bool]]) -> None:
    folder.mkdir(parents=True)
    metrics = {name: {"value": 50.0} for name in NAMES}
    real = {**metrics, "validity": {"value": validity_mp20}}
    (folder / "cfg_T1000.json").write_text(json.dumps({
        "format": "dosmatgen-metrics", "n_structures": 3, "metrics": metrics,
        "by_source": {"mp20": {"n_structures": len(sizes_valid), "metrics": real},
                      "prototypes": {"n_structures": 1, "metrics": metrics}}}))
    rows = ["source,n_atoms,validity_reason"] + [f"mp20,{n},{'' if ok else 'overlapping_atoms'}" for n, ok in sizes_valid]
    rows.append("prototypes,3,overlapping_atoms")
    (folder / "cfg_T1000.per_structure.csv").write_text("\n".join(rows) + "\n")


def test_summary_reads_each_variant(tmp_path, capsys):
    _write_metrics(tmp_path / "demo", 66.7, [(4, True), (12, False), (18, True)])
    _write_metrics(tmp_path / "opts" / "demo_repel" / "metrics", 100.0, [(4, True), (12, True), (18, True)])
    out = tmp_path / "summary.md"
    assert summary.main(["--demo-metrics", str(tmp_path / "demo"), "--options-work", str(tmp_path / "opts"),
                         "--out", str(out)]) == 0
    text = out.read_text()
    assert "| demo (step_lr 1e-5) | mp20 | 3 | 66.7 |" in text
    assert "| demo + repulsion | mp20 | 3 | 100.0 |" in text
    # by atoms per cell: only the real crystals count (the invalid prototype is not among them)
    assert "| demo (step_lr 1e-5) | 1 / 1 | — | — | 0 / 1 | 1 / 1 |" in text
    assert "| demo + repulsion | 1 / 1 | — | — | 1 / 1 | 1 / 1 |" in text
    assert "--step-lr 0`" not in text  # variants without metrics are left out, not invented


def test_summary_needs_the_demo_metrics(tmp_path):
    assert summary.main(["--demo-metrics", str(tmp_path / "missing"), "--options-work", str(tmp_path)]) == 2
