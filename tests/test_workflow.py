"""The Snakemake workflow: lint, the whole DAG in a dry run, targets, config errors before any work.

Dry runs use a tiny synthetic store written by the test, so they work before the built-in dataset
exists and never touch the repository's work/ or results/ folders (-d points at a temp folder).
The end-to-end run of the ci profile is ``scripts/ci_workflow.sh`` (slow test below).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from dosmatgen.config import REPO_ROOT

SNAKEMAKE = Path(sys.executable).parent / "snakemake"
SNAKEFILE = REPO_ROOT / "Snakefile"
pytestmark = pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed in this environment")


def make_synthetic_store(path: Path, n: int = 12, seed: int = 0) -> Path:
    """A few rock-salt / CsCl / L1_2 crystals with Gaussian 'site DOS' (only for workflow tests)."""
    from dosmatgen.data.schema import CrystalRecord
    from dosmatgen.data.store import save_records
    from dosmatgen.dos.grid import ENERGY_GRID

    rng = np.random.default_rng(seed)
    fcc = 0.5 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    protos = [(fcc * 5.6, [[0, 0, 0], [0.5, 0.5, 0.5]], [11, 17]),
              (np.eye(3) * 3.4, [[0, 0, 0], [0.5, 0.5, 0.5]], [55, 35]),
              (np.eye(3) * 4.0, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], [28, 79, 79, 79])]
    records = []
    for i in range(n):
        lattice, frac, zs = protos[i % len(protos)]
        dos = np.stack([np.exp(-0.5 * ((ENERGY_GRID - (z % 13 - 6) - rng.normal(0, 0.1)) / 0.7) ** 2) for z in zs])
        records.append(CrystalRecord(f"synthetic-{i}", np.array(zs), np.array(frac, float),
                                     lattice * rng.uniform(0.98, 1.02), dos, {"source": "test"}))
    save_records(path, records, {"source": "synthetic test store"})
    return path


def write_config(tmp_path: Path, **edits) -> Path:
    """config/ci.yaml pointed at a synthetic store, with ``section=dict`` updates applied."""
    with open(REPO_ROOT / "config" / "ci.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg["data"]["builtin_store"] = str(make_synthetic_store(tmp_path / "store.npz"))
    for key, value in edits.items():
        if isinstance(value, dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def snakemake(*args: str, cwd: Path | None = None, configfile: Path | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [str(SNAKEMAKE), "-s", str(SNAKEFILE), "--nolock"]
    if cwd is not None:
        cmd += ["-d", str(cwd)]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=cwd or REPO_ROOT)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    counts: dict[str, int] = {}
    in_table = False
    for line in output.splitlines():
        if line.startswith("Job stats"):
            in_table = True
            continue
        if in_table:
            m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
            if m and m.group(1) != "total":
                counts[m.group(1)] = int(m.group(2))
            elif line.strip().startswith("total"):
                break
    return counts


@pytest.fixture(scope="module")
def ci_config(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("ci"))


def test_dry_run_shows_the_whole_dag(ci_config):
    proc = snakemake("-n", "-p", "all", cwd=ci_config.parent, configfile=ci_config)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    counts = job_counts(proc.stdout + proc.stderr)
    cfg = yaml.safe_load(ci_config.read_text())
    n_sets = len(cfg["generate"]["guidance"]) * len(cfg["generate"]["t0"])
    assert cfg["evaluate"]["baselines"] == ["uncond", "lookup"]
    n_uncond = len(cfg["generate"]["t0"])  # the unconditional baseline: regenerated and scored, never relaxed
    assert counts == {
        "all": 1, "split": 1, "data_info": 1, "train": 3, "regenerate": n_sets + n_uncond, "score": n_sets + n_uncond,
        "lookup": 1, "formation_generated": n_sets, "formation_truth": 1, "provenance": 1, "result_tables": 1,
        "claims": 1,
        "study": len(cfg["studies"]["run"]), "study_table": len(cfg["studies"]["run"]), "study_figures": 1, "formation_figures": 1, "gallery": 1,
        "report": 1,
    }
    text = proc.stdout + proc.stderr
    assert "dosmatgen evaluate regenerate" in text and "--guidance classifier --regressor" in text
    assert "--guidance uncond" in text and "dosmatgen evaluate lookup" in text
    assert "work/ci/metrics/lookup.json" in text and "formation/uncond" not in text
    assert "results-ci/report.html" in text and "work/ci/models/diffusion/best.pt" in text
    # the model section's type head reaches the diffusion model's training command only
    train_lines = [line for line in text.splitlines() if "dosmatgen train --kind" in line]
    assert len(train_lines) == 3
    for line in train_lines:
        assert ("--type-target posterior" in line) == ("--kind diffusion" in line), line


@pytest.mark.parametrize("target, rules", [
    ("data", {"split", "data_info", "data"}),
    ("models", {"split", "train", "models"}),
])
def test_named_targets(ci_config, target, rules):
    proc = snakemake("-n", target, cwd=ci_config.parent, configfile=ci_config)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert set(job_counts(proc.stdout + proc.stderr)) == rules


def test_cfg_only_run_needs_no_regressor(tmp_path):
    config = write_config(tmp_path, generate={"guidance": ["cfg"], "t0": [1000]})
    proc = snakemake("-n", "tables", cwd=tmp_path, configfile=config)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts["train"] == 2 and counts["regenerate"] == 2 and "study" not in counts  # cfg + uncond


def test_recipe_options_reach_the_commands(tmp_path):
    """EMA, per-source repeats and final weights reach training and every consumer of the
    checkpoint; omega_geometry reaches CFG regeneration (not classifier guidance or the
    unconditional baseline) and the studies, with step_lr.  The default config (negative
    control) has none of them and uses best.pt."""
    diffusion = {"epochs": 2, "batch_size": 4, "ema_decay": 0.999, "repeat_source": {"mp20": 4}, "weights": "final"}
    config = write_config(tmp_path, train={"diffusion": diffusion}, model={"lattice_scale": "atoms"},
                          generate={"omega_geometry": 0.0, "step_lr": 0.0})
    proc = snakemake("-n", "-p", "all", cwd=tmp_path, configfile=config)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lines = (proc.stdout + proc.stderr).splitlines()
    train = {k: [ln for ln in lines if f"dosmatgen train --kind {k}" in ln] for k in ("diffusion", "surrogate")}
    assert "--ema-decay 0.999" in train["diffusion"][0] and "--repeat-source mp20=4" in train["diffusion"][0]
    assert "--ema-decay" not in train["surrogate"][0] and "--repeat-source" not in train["surrogate"][0]
    assert "--lattice-scale atoms" in train["diffusion"][0] and "--lattice-scale" not in train["surrogate"][0]
    regressor = [ln for ln in lines if "dosmatgen train --kind regressor" in ln]
    assert regressor and "--lattice-scale atoms" in regressor[0]  # classifier guidance needs them alike
    consumers = [ln for ln in lines if "evaluate regenerate" in ln or ("dosmatgen studies " in ln and "--checkpoint" in ln)]
    assert consumers and all("models/diffusion/final.pt" in ln for ln in consumers)
    regen = {g: [ln for ln in lines if "evaluate regenerate" in ln and f"--guidance {g} " in ln]
             for g in ("cfg", "classifier", "uncond")}
    assert regen["cfg"] and all("--omega-geometry 0.0" in ln for ln in regen["cfg"])
    assert not [ln for g in ("classifier", "uncond") for ln in regen[g] if "--omega-geometry" in ln]
    studies = [ln for ln in lines if "dosmatgen studies " in ln and "--checkpoint" in ln]
    assert studies and all("--step-lr 0.0 --omega-geometry 0.0" in ln for ln in studies)

    default = write_config(tmp_path / "default")
    text = snakemake("-n", "-p", "all", cwd=tmp_path / "default", configfile=default).stdout
    assert "--omega-geometry" not in text and "--ema-decay" not in text and "--repeat-source" not in text
    assert "--lattice-scale" not in text
    assert "--checkpoint work/ci/models/diffusion/best.pt" in text and "--checkpoint work/ci/models/diffusion/final" not in text


@pytest.mark.parametrize("edit, message", [
    ({"train": {"diffusion": {"epochs": 2, "batch_size": 4, "repeat_source": {"real": 2}}}}, "real"),
    ({"train": {"diffusion": {"epochs": 2, "batch_size": 4, "weights": "last"}}}, "last"),
    ({"train": {"diffusion": {"epochs": 2, "batch_size": 4, "ema_decay": 1.0}}}, "ema_decay"),
    ({"generate": {"omega_geometry": -1}}, "omega_geometry"),
    ({"model": {"lattice_scale": "volume"}}, "lattice_scale"),
])
def test_recipe_options_are_validated(tmp_path, edit, message):
    config = write_config(tmp_path, **edit)
    proc = snakemake("-n", "all", cwd=tmp_path, configfile=config)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


def test_invalid_config_stops_before_any_work(tmp_path):
    config = write_config(tmp_path, train={"diffusion": {"epochs": 0, "batch_size": 16}})
    proc = snakemake("--cores", "1", "all", cwd=tmp_path, configfile=config)
    assert proc.returncode != 0
    assert "train.diffusion.epochs: 0 is less than the minimum of 1" in proc.stdout + proc.stderr
    assert not (tmp_path / "work").exists() and not (tmp_path / "results-ci").exists()


def test_configfile_replaces_the_demo_config(tmp_path):
    """A --configfile is not layered over config/demo.yaml: keys it leaves out take the schema
    defaults, not the demo's values (the demo caps diffusion training at max_steps 3000)."""
    config = write_config(tmp_path, train={"diffusion": {"epochs": 2, "batch_size": 8},
                                           "regressor": {"epochs": 2, "batch_size": 8},
                                           "surrogate": {"epochs": 2, "batch_size": 8}})
    proc = snakemake("-n", "-p", "models", cwd=tmp_path, configfile=config)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "--kind diffusion" in proc.stdout and "--max-steps" not in proc.stdout
    assert "is extended by additional config" not in proc.stdout + proc.stderr


def test_command_line_override_is_validated_too(ci_config):
    proc = snakemake("-n", "data", "--config", "seed=-2", cwd=ci_config.parent, configfile=ci_config)
    assert proc.returncode != 0
    assert "+ --config: seed: -2 is less than the minimum of 0" in proc.stdout + proc.stderr


RELEASE = REPO_ROOT / "resources" / "reference_release"


def authors_config(tmp_path: Path, **authors) -> Path:
    """config/authors.yaml with absolute release/data folders (or the given ones)."""
    cfg = yaml.safe_load((REPO_ROOT / "config" / "authors.yaml").read_text())
    cfg["authors"] = {"release": str(RELEASE), "data": str(RELEASE / "data" / "mp_dos"), **authors}
    path = tmp_path / "authors.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_authors_profile_imports_instead_of_training(tmp_path):
    """The diffusion model and the split come from the release (nothing re-split, no diffusion
    training, no refitted standardiser); regeneration samples as the authors' scripts do."""
    proc = snakemake("-n", "-p", "tables", cwd=tmp_path, configfile=authors_config(tmp_path))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    counts = job_counts(out)
    assert counts["import_authors"] == 1 and counts["import_authors_data"] == 1
    assert counts["train"] == 1 and "split" not in counts  # the surrogate only
    assert "--kind surrogate" in out and "--kind diffusion" not in out
    assert "--step-lr 5e-06 --start-at-T --predictor-input pre_corrector" in out


def test_authors_profile_needs_its_folders(tmp_path):
    config = authors_config(tmp_path, release=str(tmp_path / "nowhere"))
    proc = snakemake("-n", "tables", cwd=tmp_path, configfile=config)
    assert proc.returncode != 0
    assert f"authors.release: {tmp_path / 'nowhere'} is not a folder" in proc.stdout + proc.stderr


def test_lint_is_clean():
    proc = snakemake("--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition" in proc.stdout + proc.stderr


@pytest.mark.parametrize("profile", ["ci", "demo", "paper", "slurm", "authors"])
def test_profiles_lint_clean(profile):
    if profile == "slurm":
        pytest.importorskip("snakemake_executor_plugin_slurm")
    proc = snakemake("--profile", str(REPO_ROOT / "workflow" / "profiles" / profile), "--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_default_config_is_the_demo():
    store = REPO_ROOT / "resources" / "builtin_dos.npz"
    if not store.exists():
        pytest.skip("built-in store not built yet")
    # --forceall: results/ of the recorded demo run is committed, so a plain dry run may have
    # nothing to do; the point here is which config the jobs come from.
    proc = snakemake("-n", "--forceall", "tables")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "work/demo/" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_ci_workflow_end_to_end(tmp_path):
    """Runs scripts/ci_workflow.sh in a copy of the repository (minutes)."""
    repo = tmp_path / "repo"
    ignore = shutil.ignore_patterns(".venv", ".git", "work", "results-ci", ".snakemake", "__pycache__")
    shutil.copytree(REPO_ROOT, repo, ignore=ignore)
    os.symlink(REPO_ROOT / ".venv", repo / ".venv")
    proc = subprocess.run(["bash", "scripts/ci_workflow.sh"], cwd=repo, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert "all gates passed" in proc.stdout


def test_sampling_options_refuse_samples_of_another_checkpoint(tmp_path):
    """experiments/sampling_options/demo_sampling_options.sh reuses finished samples in WORK; a new checkpoint must not."""
    fake = tmp_path / "dosmatgen"
    fake.write_text("#!/usr/bin/env bash\necho \"$@\" >> \"$(dirname \"$0\")/calls.log\"\n")
    fake.chmod(0o755)
    ckpt = tmp_path / "best.pt"
    work = tmp_path / "work"

    def run(text: str) -> subprocess.CompletedProcess:
        ckpt.write_text(text)
        env = {**os.environ, "DOSMATGEN": str(fake), "CHECKPOINT": str(ckpt), "WORK": str(work),
               "OUT": str(tmp_path / "out"), "VARIANTS": "steplr0", "T0S": "1000"}
        return subprocess.run(["bash", "experiments/sampling_options/demo_sampling_options.sh"], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    first = run("model A")
    assert first.returncode == 0, first.stderr
    assert "--step-lr 0" in (tmp_path / "calls.log").read_text()
    assert run("model A").returncode == 0  # same checkpoint: reuse is fine
    other = run("model B")
    assert other.returncode == 2
    assert "another checkpoint" in other.stderr
