"""Hostile inputs across the command line and the run config (issue 16): each case must stop with
exit code 2 (or the config schema's rejection) and ONE line naming the problem, before any work,
leaving nothing at the output path. Plus the state cases: two writers on one output, a stale lock,
leftovers of a killed run, the step count of a short training, warnings nobody can act on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from dosmatgen.cli import main as cli_main
from dosmatgen.config import REPO_ROOT, validate_run_config
from dosmatgen.errors import ConfigError
from factories import write_workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Good inputs, and bad files made from them."""
    d = tmp_path_factory.mktemp("hostile")
    write_workspace(d, prefix="h")
    good = (d / "s.npz").read_bytes()
    (d / "truncated.npz").write_bytes(good[: len(good) // 2])
    _rewrite_store(d / "s.npz", d / "badcrc.npz", flip_dos_byte=True)
    _rewrite_store(d / "s.npz", d / "z150.npz", z150=True)
    _rewrite_store(d / "s.npz", d / "nan.npz", nan_dos=True)
    (d / "gen_corrupt.npz").write_bytes(b"PK\x03\x04 definitely not a generated set")
    (d / "a_file").write_text("in the way")
    std_nan = json.loads((d / "std.json").read_text())
    std_nan["mean"][3] = float("nan")
    (d / "std_nan.json").write_text(json.dumps(std_nan))
    np.save(d / "negative.npy", -np.ones((1, 400)))
    cell = (np.eye(3) * 4).tolist()
    dos = np.ones((2, 400)).tolist()
    for name, entry in {
        "z_fraction": {"structure_id": "x", "positions": [[0, 0, 0], [2, 2, 2]], "cell": cell,
                       "atomic_numbers": [11.7, 17], "y": dos},
        "overlap": {"structure_id": "x", "positions": [[0, 0, 0], [0, 0, 0.01]], "cell": cell,
                    "atomic_numbers": [11, 17], "y": dos},
        "negative_dos": {"structure_id": "x", "positions": [[0, 0, 0], [2, 2, 2]], "cell": cell,
                         "atomic_numbers": [11, 17], "y": (-np.ones((2, 400))).tolist()},
    }.items():
        (d / f"{name}.json").write_text(json.dumps([entry]))
    return d


def _rewrite_store(src: Path, dst: Path, *, flip_dos_byte: bool = False, z150: bool = False,
                   nan_dos: bool = False) -> None:
    """A copy of a store with one defect: a corrupted DOS member (bad CRC), an atomic number of
    150, or a NaN in the DOS block (none of which ``save_records`` would ever write)."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    if z150:
        arrays["atomic_numbers"] = arrays["atomic_numbers"].copy()
        arrays["atomic_numbers"][0] = 150
    if nan_dos:
        arrays["dos"] = arrays["dos"].copy()
        arrays["dos"][0, 5] = np.nan
    np.savez_compressed(dst, **arrays)
    if flip_dos_byte:
        data = bytearray(dst.read_bytes())
        with zipfile.ZipFile(dst) as zf:
            info = zf.getinfo("dos.npy")
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        middle = start + info.compress_size // 2
        data[middle] ^= 0xFF
        dst.write_bytes(bytes(data))


# ---- command-line cases: (argv with {d} = fixture folder and {o} = output path, words of the message) --
SAMPLE = "sample --checkpoint {d}/diff.pt --num-atoms 2 --n 2 --device cpu --no-progress --out {o}"
REGEN = ("evaluate regenerate --checkpoint {d}/diff.pt --store {d}/s.npz --split {d}/split.json --guidance cfg "
         "--t0 20 --steps 2 --device cpu --no-progress --out {o}")
TRAIN = ("train --kind diffusion --store {d}/s.npz --split {d}/split.json --size tiny --epochs 1 --batch-size 4 "
         "--device cpu --no-progress --out {o}")
STUDY = "studies masked --checkpoint {d}/diff.pt --surrogate {d}/diff.pt --store {d}/s.npz --out {o}"

CASES: dict[str, tuple[str, str]] = {
    # corrupt or truncated archives
    "store_truncated_sample": (SAMPLE.replace("--num-atoms 2", "--store {d}/truncated.npz --template h0 --t0 5"),
                               "truncated or corrupt"),
    "store_truncated_train": (TRAIN.replace("{d}/s.npz", "{d}/truncated.npz"), "truncated or corrupt"),
    "store_truncated_info": ("data info --store {d}/truncated.npz --json {o}", "truncated or corrupt"),
    "store_truncated_split": ("data split --store {d}/truncated.npz --out {o}", "truncated or corrupt"),
    "store_truncated_regenerate": (REGEN.replace("{d}/s.npz", "{d}/truncated.npz"), "truncated or corrupt"),
    "store_bad_crc_info": ("data info --store {d}/badcrc.npz --json {o}", "truncated or corrupt"),
    "store_bad_crc_split": ("data split --store {d}/badcrc.npz --out {o} --standardiser {o}.std", "corrupt"),
    "store_z150_info": ("data info --store {d}/z150.npz --json {o}", "atomic number 150"),
    "store_nan_dos_split": ("data split --store {d}/nan.npz --out {o} --standardiser {o}.std", "NaN or inf"),
    "generated_corrupt_score": ("evaluate score --generated {d}/gen_corrupt.npz --surrogate {d}/diff.pt "
                                "--store {d}/s.npz --split {d}/split.json --out {o}", "not a readable generated"),
    # outputs that cannot be written (a file where a folder must be)
    "out_parent_is_file_sample": (SAMPLE.replace("{o}", "{d}/a_file/gen"), "a_file is a file, not a folder"),
    "out_parent_is_file_train": (TRAIN.replace("{o}", "{d}/a_file/run"), "a_file is a file, not a folder"),
    "out_parent_is_file_split": ("data split --store {d}/s.npz --out {d}/a_file/split.json", "is a file, not a folder"),
    "out_parent_is_file_std": ("data split --store {d}/s.npz --out {o} --standardiser {d}/a_file/std.json",
                               "is a file, not a folder"),
    "out_parent_is_file_regenerate": (REGEN.replace("{o}", "{d}/a_file/g.npz"), "is a file, not a folder"),
    "out_parent_is_file_info": ("data info --store {d}/s.npz --json {d}/a_file/i.json", "is a file, not a folder"),
    "out_parent_is_file_import": ("data import-json --input {d}/overlap.json --out {d}/a_file/s.npz",
                                  "is a file, not a folder"),
    # numbers out of range or not finite
    "score_match_timeout_negative": ("evaluate score --generated {d}/gen_corrupt.npz --surrogate {d}/diff.pt "
                                     "--store {d}/s.npz --split {d}/split.json --match-timeout -1 --out {o}",
                                     "--match-timeout: -1.0 must be > 0"),
    "sample_omega_nan": (SAMPLE + " --omega nan", "--omega: 'nan' is not a finite number"),
    "sample_omega_inf": (SAMPLE + " --omega inf", "--omega: 'inf' is not a finite number"),
    "sample_omega_negative": (SAMPLE + " --omega -5", "--omega: -5.0 must be >= 0"),
    "sample_guidance_scale_nan": (SAMPLE + " --guidance-scale nan", "--guidance-scale: 'nan'"),
    "sample_step_lr_nan": (SAMPLE + " --step-lr nan", "--step-lr: 'nan'"),
    "sample_omega_text": (SAMPLE + " --omega lots", "--omega: 'lots' is not a number"),
    "regenerate_omega_nan": (REGEN + " --omega nan", "--omega: 'nan'"),
    "regenerate_guidance_scale_nan": (REGEN + " --guidance-scale nan", "--guidance-scale: 'nan'"),
    "regenerate_step_lr_negative": (REGEN + " --step-lr -1", "--step-lr: -1.0 must be >= 0"),
    "regenerate_omega_geometry_nan": (REGEN + " --omega-geometry nan", "--omega-geometry: 'nan'"),
    "regenerate_omega_geometry_uncond": (REGEN.replace("--guidance cfg", "--guidance uncond") + " --omega-geometry 0",
                                         "only used with --guidance cfg"),
    "sample_omega_geometry_with_regressor": (SAMPLE + " --regressor {d}/diff.pt --omega-geometry 0",
                                             "not used with --regressor"),
    "regenerate_repel_distance_zero": (REGEN + " --repel-distance 0", "--repel-distance: 0.0 must be > 0"),
    "sample_repel_distance_nan": (SAMPLE + " --repel-distance nan", "--repel-distance: 'nan'"),
    "regenerate_repel_until_negative": (REGEN + " --repel-distance 1 --repel-until -5",
                                        "repulsion 'until' must be a timestep >= 0"),
    "train_repeat_source_unknown": (TRAIN + " --repeat-source real=2", "unknown source 'real'"),
    "train_supercells_one": (TRAIN + " --supercells 1", "supercell max_atoms must be an integer >= 2"),
    "study_omega_nan": (STUDY + " --omega nan", "--omega: 'nan'"),
    "study_omegas_nan": ("studies window-sweep --checkpoint {d}/diff.pt --surrogate {d}/diff.pt --omegas 1 nan "
                         "--out {o}", "--omegas: 'nan'"),
    "study_match_timeout_zero": (STUDY.replace("studies masked", "studies template") + " --match-timeout 0",
                                 "--match-timeout: 0.0 must be > 0"),
    "train_lr_nan": (TRAIN + " --lr nan", "--lr: 'nan'"),
    "train_lr_negative": (TRAIN + " --lr -0.1", "--lr: -0.1 must be > 0"),
    "download_min_interval_negative": ("data download-mp --out {o} --ids mp-1 --min-interval -1",
                                       "--min-interval: -1.0 must be >= 0"),
    "split_fraction_nan": ("data split --store {d}/s.npz --out {o} --fractions nan 0.5 0.5", "'nan'"),
    # values that used to pass silently
    "train_nan_standardiser": (TRAIN + " --standardiser {d}/std_nan.json", "finite means"),
    "import_fractional_atomic_number": ("data import-json --input {d}/z_fraction.json --out {o}",
                                        "atomic numbers must be whole numbers"),
    "import_overlapping_atoms": ("data import-json --input {d}/overlap.json --out {o}", "atoms overlap"),
    "import_negative_dos": ("data import-json --input {d}/negative_dos.json --out {o}", "mostly negative"),
    "sample_negative_target": (SAMPLE + " --target-dos {d}/negative.npy --condition-atoms 0", "mostly negative"),
    "download_key_wrong_length": ("data download-mp --out {o} --ids mp-1 --api-key 0123", "has 4 characters"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_command_line_input(ws, tmp_path, capsys, monkeypatch, case):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    template, expect = CASES[case]
    out = tmp_path / "out"
    argv = template.format(d=ws, o=out).split()
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (code, captured.out, err)
    assert len(err.splitlines()) == 1, err
    assert expect in err, err
    assert "Traceback" not in captured.out + captured.err
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert leftovers == [], leftovers  # nothing at the output path, no lock, no staging folder


# ---- outputs that would destroy an input (issue 34): one rule for every command ----------------------
# {t} is a private copy of the workspace: a case that wrongly writes cannot harm the other tests.
PATH_CASES: dict[str, tuple[str, str]] = {
    "split_out_is_store": ("data split --store {t}/s.npz --out {t}/s.npz", "--out {t}/s.npz is the input --store"),
    "split_standardiser_is_store": ("data split --store {t}/s.npz --out {t}/x.json --standardiser {t}/s.npz",
                                    "--standardiser {t}/s.npz is the input --store"),
    "split_standardiser_is_out": ("data split --store {t}/s.npz --out {t}/x.json --standardiser {t}/x.json",
                                  "are the same path"),
    "info_json_is_store": ("data info --store {t}/s.npz --json {t}/s.npz", "--json {t}/s.npz is the input --store"),
    "regenerate_out_is_store": (REGEN.replace("{d}", "{t}").replace("{o}", "{t}/s.npz"), "is the input --store"),
    "score_out_is_generated": ("evaluate score --generated {t}/gen_corrupt.npz --surrogate {t}/diff.pt --store "
                               "{t}/s.npz --split {t}/split.json --out {t}/gen_corrupt.npz", "is the input --generated"),
    "plan_json_is_rates": ("plan --rates {t}/std.json --json {t}/std.json", "is the input --rates"),
    "studies_out_is_a_file": (STUDY.replace("{d}", "{t}").replace("{o}", "{t}/split.json"),
                              "is an existing file; it must be a folder"),
    "split_out_is_a_device": ("data split --store {t}/s.npz --out /dev/null", "not a regular file or folder"),
    "split_out_is_a_symlink_to_store": ("data split --store {t}/s.npz --out {t}/link.json", "is the input --store"),
    "studies_out_holds_the_store": (STUDY.replace("{d}", "{t}").replace("{o}", "{t}"), "holds the input"),
    "regenerate_out_is_a_folder": (REGEN.replace("{d}", "{t}").replace("{o}", "{t}/sub"), "is a folder"),
}


def _checksums(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else p.name
            for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("case", sorted(PATH_CASES))
def test_an_output_never_destroys_an_input(ws, tmp_path, capsys, case):
    import shutil

    t = tmp_path / "ws"
    shutil.copytree(ws, t)
    (t / "sub").mkdir()
    (t / "link.json").symlink_to(t / "s.npz")
    before = _checksums(t)
    template, expect = PATH_CASES[case]
    code = main(template.format(t=t, o=t / "out").split())
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2 and len(err.splitlines()) == 1, (code, err)
    assert expect.format(t=t) in err, err
    assert "Traceback" not in captured.out + captured.err
    assert _checksums(t) == before  # every input byte-identical, nothing added


def test_a_distinct_output_is_accepted(ws, tmp_path, capsys):
    """Negative control: the same command with an output of its own runs."""
    assert main(f"data split --store {ws}/s.npz --out {tmp_path}/split.json".split()) == 0, capsys.readouterr().err
    assert (tmp_path / "split.json").is_file()


def undeclared_path_options(parser) -> list[str]:
    """Every option of every command whose name says it holds a path but that the command does
    not declare as an input or an output (:func:`dosmatgen.commands.arguments.declare_paths`)."""
    import argparse

    from dosmatgen.commands.arguments import PATH_DESTS

    found = []

    def walk(p, words):
        p.format_usage()  # a parser that adds its options when first used (data build-builtin) adds them now
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        for sub in subs:
            for name, child in sub.choices.items():
                walk(child, words + [name])
        if subs:
            return
        roles = p.get_default("_paths") or {"inputs": (), "outputs": {}}
        declared = set(roles["inputs"]) | set(roles["outputs"])
        found.extend(f"{' '.join(words)} --{a.dest}" for a in p._actions
                     if a.option_strings and a.dest in PATH_DESTS and a.dest not in declared)

    walk(parser, [])
    return found


def test_every_command_declares_its_path_options():
    from dosmatgen.cli import build_parser

    assert undeclared_path_options(build_parser()) == []


def test_a_command_without_declared_paths_is_found():
    """Negative control: a command registered with an --out it does not declare."""
    from dosmatgen.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    new = sub.add_parser("new-command")
    new.add_argument("--out")
    new.add_argument("--store")
    assert undeclared_path_options(parser) == ["new-command --out", "new-command --store"]


def main(argv: list[str]) -> int:
    """The command line as a user runs it: argparse's own errors exit through SystemExit."""
    try:
        return cli_main(argv)
    except SystemExit as exc:
        return int(exc.code)


# ---- the run config ----------------------------------------------------------------------------------
CONFIG_CASES = {
    "omega_nan": (("generate", "omega"), float("nan"), "generate.omega: nan is not a finite number"),
    "omega_inf": (("generate", "guidance_scale"), float("inf"), "generate.guidance_scale: inf is not a finite"),
    "fixed_type_unknown_element": (("studies", "fixed-type", "elements"), ["Xx"], "'Xx' is not an element symbol"),
    "window_reversed": (("studies", "window-sweep", "windows"), [[5, -5]], "must be [low, high] with low < high"),
    "fmax_nan": (("evaluate", "fmax"), float("nan"), "evaluate.fmax: nan is not a finite number"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_run_config_is_rejected_before_any_work(case):
    keys, value, expect = CONFIG_CASES[case]
    cfg = yaml.safe_load((REPO_ROOT / "config" / "ci.yaml").read_text())
    node = cfg
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    with pytest.raises(ConfigError, match=None) as info:
        validate_run_config(cfg, source="ci.yaml", schema_path=REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml")
    assert expect in str(info.value)


def test_the_unmodified_config_passes():
    """Negative control for the config cases: the committed ci config is valid."""
    cfg = yaml.safe_load((REPO_ROOT / "config" / "ci.yaml").read_text())
    validate_run_config(cfg, source="ci.yaml", schema_path=REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml")


def test_the_case_count_the_readme_states():
    n = len(CASES) + len(CONFIG_CASES) + len(PATH_CASES)
    assert n >= 40
    assert f"{n} hostile inputs" in (REPO_ROOT / "README.md").read_text()


# ---- state -------------------------------------------------------------------------------------------
@pytest.fixture()
def other_run(tmp_path):
    """A live process that holds the lock of an output, as a second run would see it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _hold_lock(out: Path, pid: int) -> Path:
    import socket

    lock = out.with_name(out.name + ".lock")
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": "earlier"}))
    return lock


WRITERS = {"regenerate": (REGEN, "g.npz"), "sample": (SAMPLE, "gen"), "train": (TRAIN, "run"),
           "studies": (STUDY, "study")}


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_two_writers_on_one_output(ws, tmp_path, capsys, other_run, command):
    template, name = WRITERS[command]
    out = tmp_path / name
    lock = _hold_lock(out, other_run.pid)
    argv = template.format(d=ws, o=out).split()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"being written by another run (pid {other_run.pid}" in err, err
    assert not out.exists() and lock.exists()  # the other run's claim is left alone


def test_stale_lock_of_a_dead_run_is_taken_over(ws, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "g.npz"
    lock = _hold_lock(out, dead.pid)
    assert main(REGEN.format(d=ws, o=out).split()) == 0, capsys.readouterr().err
    assert out.exists() and not lock.exists()


def test_sample_rerun_removes_leftovers_of_a_killed_write(ws, tmp_path, capsys):
    out = tmp_path / "gen"
    for leftover in (tmp_path / ".gen.staging-abc123", tmp_path / ".gen.old-def456"):
        leftover.mkdir()
        (leftover / "sample-0000.cif").write_text("half written")
    assert main(SAMPLE.format(d=ws, o=out).split()) == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen"]


def test_failed_train_leaves_no_config_behind(ws, tmp_path, capsys):
    out = tmp_path / "run"
    assert main((TRAIN + " --standardiser {d}/std_nan.json").format(d=ws, o=out).split()) == 2
    assert not out.exists()


def test_short_training_reports_its_steps(ws, tmp_path, capsys):
    out = tmp_path / "run"
    assert main((TRAIN + " --max-steps 2").format(d=ws, o=out).split()) == 0
    text = capsys.readouterr().out
    assert "trained diffusion: 2 optimiser steps" in text, text


def test_no_electronegativity_warnings_from_sample(ws, tmp_path, capsys):
    from pymatgen.core import Element

    with warnings.catch_warnings(record=True) as control:
        warnings.simplefilter("always")
        _ = Element("He").X  # noqa: F841 - the warning exists (negative control)
    if not any("Pauling" in str(w.message) for w in control):
        pytest.skip("this pymatgen does not warn about He's electronegativity")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code = main((SAMPLE + " --fixed-types 0=He,1=Ne").format(d=ws, o=tmp_path / "gen").split())
    assert code == 0, capsys.readouterr().err
    assert not [w for w in seen if "Pauling" in str(w.message)]


def test_download_with_a_bad_key_leaves_no_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    assert main(["data", "download-mp", "--out", str(tmp_path / "mp"), "--ids", "mp-1"]) == 2
    assert "no Materials Project API key" in capsys.readouterr().err
    assert not (tmp_path / "mp").exists()


def test_lock_is_not_left_after_success_or_error(ws, tmp_path, capsys):
    out = tmp_path / "g.npz"
    assert main(REGEN.format(d=ws, o=out).split()) == 0
    assert main((REGEN + " --t0 99").format(d=ws, o=tmp_path / "h.npz").split()) == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".lock") == []
    assert os.path.exists(out)
