"""The Snakemake workflow: lint, the whole DAG in a dry run, targets, config errors before any work.

Dry runs use a tiny synthetic store written by the test, so they work before the built-in dataset
exists and never touch the repository's work/ or results/ folders (-d points at a temp folder).
The end-to-end run of the ci profile is ``scripts/ci_workflow.sh`` (slow test below).
"""

from __future__ import annotations

import json
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
    }
    text = proc.stdout + proc.stderr
    assert "dosmatgen evaluate regenerate" in text and "--guidance classifier --regressor" in text
    assert "--guidance uncond" in text and "dosmatgen evaluate lookup" in text
    assert "work/ci/metrics/lookup.json" in text and "formation/uncond" not in text
    assert "results-ci/claims.md" in text and "work/ci/models/diffusion/best.pt" in text
    # the model section's type head reaches the diffusion model's training command only
    train_lines = [line for line in text.splitlines() if "dosmatgen train --kind" in line]
    assert len(train_lines) == 3
    for line in train_lines:
        assert ("--type-target posterior" in line) == ("--kind diffusion" in line), line
        assert "--dos-shift" not in line  # dos_shift 0 (the ci profile's, the paper's) renders no flag


def test_model_dos_shift_reaches_the_diffusion_training_only(tmp_path):
    config = write_config(tmp_path, model={"dos_shift": 4})
    proc = snakemake("-n", "-p", "all", cwd=tmp_path, configfile=config)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    train_lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "dosmatgen train --kind" in line]
    assert len(train_lines) == 3
    for line in train_lines:
        assert ("--dos-shift 4" in line) == ("--kind diffusion" in line), line



def test_relaxed_match_reaches_the_named_sets_only(tmp_path):
    """evaluate.relaxed_match.sets adds --relaxed-match (the run's MLFF) to those sets' scoring
    only; none without it (the ci profile, as the paper's); an unknown set stops the run."""
    def score_lines(config):
        proc = snakemake("-n", "-p", "tables", cwd=config.parent, configfile=config)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        return [line for line in (proc.stdout + proc.stderr).splitlines() if "dosmatgen evaluate score" in line]

    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    lines = score_lines(write_config(tmp_path / "on", evaluate={"relaxed_match": {"sets": ["cfg_T1000"]}}))
    assert len(lines) == 9  # (cfg, classifier, the unconditional baseline) x 3 T
    for line in lines:
        assert ("--relaxed-match sevenn" in line) == ("cfg_T1000.npz" in line), line
    assert not any("--relaxed-match" in line for line in score_lines(write_config(tmp_path / "off")))
    bad = write_config(tmp_path, evaluate={"relaxed_match": {"sets": ["cfg_T999"]}})
    proc = snakemake("-n", "tables", cwd=tmp_path, configfile=bad)
    assert proc.returncode != 0 and "relaxed_match.sets names sets this run does not generate" in proc.stdout + proc.stderr


#: Prints every rule's outputs as JSON: path, whether report() registers it, its caption file.
_DUMP_OUTPUTS = r"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.io import get_flag_value, is_flagged
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

snakefile, configfile, workdir = map(Path, sys.argv[1:4])
rows = []
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    workflow = api.workflow(ResourceSettings(), ConfigSettings(configfiles=[configfile]), snakefile=snakefile,
                            workdir=workdir)._workflow
    for rule in workflow.rules:
        for f in rule.output:
            flag = get_flag_value(f, "report") if is_flagged(f, "report") else None
            caption = flag.caption.get_path_or_uri(secret_free=True) if flag and flag.caption else None
            rows.append({"rule": rule.name, "path": str(f), "report": flag is not None, "caption": caption,
                         "patterns": list(flag.patterns) if flag else []})
print("OUTPUTS " + json.dumps(rows))
"""


def declared_outputs(configfile: Path) -> list[dict]:
    """Every output the workflow declares under ``configfile`` (parsed, nothing run)."""
    proc = subprocess.run([sys.executable, "-c", _DUMP_OUTPUTS, str(SNAKEFILE), str(configfile), str(configfile.parent)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.split("OUTPUTS ", 1)[1])


#: Outputs that are no result to show: the figures folder's Markdown index (the report has its own).
NOT_FOR_THE_REPORT = ("/README.md",)


def report_problems(outputs: list[dict], folders: list[str]) -> list[str]:
    """Every output file in ``folders`` (the results and figures folders) is registered with
    report(), itself or a file of the same name with another suffix (the Markdown copy of a CSV
    table, the PDF of a PNG figure); every registered output has a caption file that exists."""
    problems, groups = [], {}
    for o in outputs:
        if o["report"] and not (o["caption"] and Path(o["caption"]).is_file()):
            problems.append(f"rule {o['rule']}: {o['path']} has no caption file ({o['caption']})")
        if any(o["path"].startswith(folder.rstrip("/") + "/") for folder in folders) \
                and not o["path"].endswith(NOT_FOR_THE_REPORT):
            groups.setdefault(os.path.splitext(o["path"])[0], []).append(o)
    problems += [f"rule {members[0]['rule']}: {stem}.* is not registered for the report"
                 for stem, members in groups.items() if not any(m["report"] for m in members)]
    return problems


def test_every_table_and_figure_is_in_the_report(ci_config):
    outputs = declared_outputs(ci_config)
    cfg = yaml.safe_load(ci_config.read_text())
    assert report_problems(outputs, [cfg["outputs"]["results"], cfg["outputs"]["figures"]]) == []
    registered = {re.sub(r"\{(\w+),[^}]*\}", r"{\1}", o["path"]) for o in outputs if o["report"]}  # no constraints
    assert {"results-ci/table1_dos_mae.csv", "results-ci/table2_match_rates.csv", "results-ci/claims.md",
            "results-ci/provenance.json", "results-ci/study_{study}.csv",
            "results-ci/figures/fig2_formation_T1000.png"} <= registered
    # the study figures (which are drawn depends on the results) come from one folder, by pattern
    assert [o["patterns"] for o in outputs if o["rule"] == "study_figures"] == [["{name}.png"]]


def test_report_check_finds_what_is_missing(tmp_path):
    caption = tmp_path / "table.rst"
    caption.write_text("A table.")
    ok = [{"rule": "t", "path": "res/t.csv", "report": True, "caption": str(caption)},
          {"rule": "t", "path": "res/t.md", "report": False, "caption": None},
          {"rule": "g", "path": "figs/README.md", "report": False, "caption": None},
          {"rule": "w", "path": "work/x.json", "report": False, "caption": None}]
    assert report_problems(ok, ["res", "figs"]) == []
    unregistered = ok + [{"rule": "u", "path": "res/u.csv", "report": False, "caption": None}]
    assert report_problems(unregistered, ["res", "figs"]) == ["rule u: res/u.* is not registered for the report"]
    no_caption = ok + [{"rule": "f", "path": "figs/f.png", "report": True, "caption": str(tmp_path / "none.rst")}]
    assert report_problems(no_caption, ["res", "figs"]) == [f"rule f: figs/f.png has no caption file ({tmp_path / 'none.rst'})"]


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


def test_tables_dft_is_an_optional_target_with_the_configured_sample(tmp_path):
    """Issue 37: `tables_dft` judges each listed set with GPAW on n crystals; `all` never runs it
    (negative control), and a set the run does not generate stops the workflow before any job."""
    config = write_config(tmp_path, evaluate={"dft_judge": {"n": 5, "sets": ["cfg_T1000", "classifier_T200"],
                                                            "timeout": 120}})
    proc = snakemake("-n", "-p", "tables_dft", cwd=tmp_path, configfile=config)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    judge = [ln for ln in proc.stdout.splitlines() if "dosmatgen evaluate dft-judge" in ln]
    assert len(judge) == 2 and all("--n 5" in ln and "--timeout 120" in ln for ln in judge)
    assert "dosmatgen evaluate dft-table" in proc.stdout
    assert "dft_judge" not in job_counts(snakemake("-n", "all", cwd=tmp_path, configfile=config).stdout)
    bad = write_config(tmp_path / "bad", evaluate={"dft_judge": {"n": 5, "sets": ["cfg_T300"]}})
    proc = snakemake("-n", "tables_dft", cwd=tmp_path / "bad", configfile=bad)
    assert proc.returncode != 0 and "does not generate" in proc.stdout + proc.stderr


def _resumable():
    """``resumable`` of workflow/rules/common.smk (a plain function in a Snakemake file)."""
    source = (REPO_ROOT / "workflow" / "rules" / "common.smk").read_text()
    start = source.index("def resumable(")
    end = source.find("\ndef ", start + 1)
    namespace: dict = {}
    exec(source[start:end if end > 0 else None], namespace)
    return namespace["resumable"]


def test_only_a_killed_run_of_the_same_command_resumes(tmp_path):
    """The marker keeps the command text: a failed attempt of one command resumes (no reset), a
    changed command after a failed attempt starts clean, and so does a rerun after success; the
    marker is gone after success. Negative control: the same change without a failed attempt in
    between would also reset, so the second case tests the command text, not the marker alone."""
    resumable = _resumable()
    log, marker, ok = tmp_path / "log", tmp_path / "out" / ".incomplete", tmp_path / "ok"

    def attempt(flag: str) -> int:
        command = f"echo run {flag} >> {log}; test -e {ok}"
        text = resumable(command, str(marker), f"echo reset >> {log}")
        return subprocess.run(["bash", "-euo", "pipefail", "-c", text], capture_output=True).returncode

    assert attempt("--dos-shift 10") != 0 and marker.exists()  # killed: the marker survives
    assert attempt("--dos-shift 10") != 0  # same command again: it resumes
    assert attempt("--dos-shift 4") != 0  # the command changed: it starts clean
    ok.touch()
    assert attempt("--dos-shift 4") == 0 and not marker.exists()
    assert attempt("--dos-shift 4") == 0  # a finished job that reruns starts clean
    assert log.read_text().split("\n")[:-1] == [
        "reset", "run --dos-shift 10", "run --dos-shift 10", "reset", "run --dos-shift 4",
        "run --dos-shift 4", "reset", "run --dos-shift 4"]
