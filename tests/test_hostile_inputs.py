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
    _write_implausible(d)
    return d


def _write_implausible(d: Path) -> None:
    """Finite but physically absurd inputs (issue 34), one per bound of dosmatgen.data.plausibility,
    and files a reader cannot decode."""
    from dosmatgen.data.schema import CrystalRecord
    from dosmatgen.data.store import save_records

    cell, pos, dos = (np.eye(3) * 4).tolist(), [[0, 0, 0], [2, 2, 2]], np.ones((2, 400))
    for name, change in {"zero_dos": {"y": np.zeros((2, 400)).tolist()},
                         "huge_fractional": {"positions": [[0, 0, 0], [2.5e299, 0, 0]]},
                         "huge_cell": {"cell": (np.eye(3) * 1e7).tolist()},
                         "huge_dos": {"y": (dos * 1e5).tolist()}}.items():
        entry = {"structure_id": "x", "positions": pos, "cell": cell, "atomic_numbers": [11, 17], "y": dos.tolist()}
        (d / f"{name}.json").write_text(json.dumps([{**entry, **change}]))
    _edit_store(d / "s.npz", d / "zero_lattice.npz", lambda a: a["lattices"].__setitem__(0, 0.0))
    _edit_store(d / "s.npz", d / "dos399.npz", lambda a: a.__setitem__("dos", a["dos"][:, :399]))
    _edit_store(d / "s.npz", d / "coplanar.npz",
                lambda a: a["lattices"].__setitem__(0, [[4, 0, 0], [0, 4, 0], [4, 4, 1e-9]]))
    save_records(d / "one.npz", [CrystalRecord("h0", [11, 17], [[0, 0, 0], [.5, .5, .5]], np.eye(3) * 4, dos)])
    split = json.loads((d / "split.json").read_text())
    (d / "noval.json").write_text(json.dumps({**split, "train": split["train"] + split["val"], "val": []}))
    np.save(d / "zero_target.npy", np.zeros((1, 400)))
    np.save(d / "huge_target.npy", np.full((1, 400), 1e5))
    cif = ("data_x\n_cell_length_a {a}\n_cell_length_b 4\n_cell_length_c 4\n_cell_angle_alpha 90\n"
           "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\n"
           "_symmetry_equiv_pos_as_xyz 'x, y, z'\nloop_\n_atom_site_label\n_atom_site_type_symbol\n"
           "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n{el}1 {el} 0 0 0\nNa1 Na 0.5 0.5 0.5\n")
    (d / "unknown_element.cif").write_text(cif.format(a=4, el="Xx"))
    (d / "huge_cell.cif").write_text(cif.format(a=1e7, el="Cl"))
    (d / "broken.json").write_text("{not json")
    (d / "binary.csv").write_bytes(b"\xff\xfe\x00\x00binary")
    (d / "run").mkdir()  # a folder where a checkpoint file belongs
    cfg = yaml.safe_load((REPO_ROOT / "config" / "ci.yaml").read_text())
    for name, value in {"out_root": "/", "out_home": "~", "out_repo": str(REPO_ROOT)}.items():
        (d / f"{name}.yaml").write_text(yaml.safe_dump({**cfg, "outputs": {**cfg["outputs"], "results": value}}))
    text = (REPO_ROOT / "config" / "ci.yaml").read_text()
    assert "\nseed:" in text
    (d / "duplicate_key.yaml").write_text(text + "\nseed: 7\n")  # plain YAML keeps the last seed silently
    (d / "utf16.yaml").write_bytes(text.encode("utf-16"))


def _edit_store(src: Path, dst: Path, edit) -> None:
    """A copy of a store whose arrays ``edit`` changed in place (values ``save_records`` would write)."""
    with np.load(src) as z:
        arrays = {k: z[k].copy() for k in z.files}
    edit(arrays)
    np.savez_compressed(dst, **arrays)


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
    "split_out_is_base_ids": ("data split --store {t}/s.npz --out {t}/split.json --base-ids {t}/split.json",
                              "--out {t}/split.json is the input --base-ids"),
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
    "regenerate_cif_dir_is_a_file": (REGEN.replace("{d}", "{t}").replace("{o}", "{t}/g.npz") + " --cif-dir {t}/std.json",
                                     "--cif-dir {t}/std.json is an existing file; it must be a folder"),
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
        p.format_usage()  # a parser that adds its options when first used adds them now
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
    from dev_scripts.builtin.cli import build_parser as builtin_parser
    from dosmatgen.cli import build_parser

    assert undeclared_path_options(build_parser()) == []
    assert undeclared_path_options(builtin_parser()) == []  # the built-in builder's commands (dev_scripts)


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


# ---- physically absurd values, values the code would silently change, messages that name the cause ---
# (issue 34) {t}: a private copy of the workspace, as for PATH_CASES; each message names the bound broken.
T_TRAIN, T_SAMPLE, T_REGEN, T_STUDY = (c.replace("{d}", "{t}").replace("{o}", "{t}/out") for c in (TRAIN, SAMPLE, REGEN,
                                                                                                   STUDY))
PLAUSIBILITY_CASES: dict[str, tuple[str, str]] = {
    # bounds of dosmatgen.data.plausibility, at every reader
    "import_all_zero_dos": ("data import-json --input {t}/zero_dos.json --out {t}/x.npz", "is zero everywhere"),
    "import_huge_fractional": ("data import-json --input {t}/huge_fractional.json --out {t}/x.npz", "MAX_FRACTIONAL"),
    "import_huge_cell": ("data import-json --input {t}/huge_cell.json --out {t}/x.npz", "outside CELL_LENGTH"),
    "import_huge_dos": ("data import-json --input {t}/huge_dos.json --out {t}/x.npz", "beyond MAX_DOS"),
    "info_zero_lattice": ("data info --store {t}/zero_lattice.npz --json {t}/i.json", "outside CELL_LENGTH"),
    "info_dos_399_columns": ("data info --store {t}/dos399.npz --json {t}/i.json", "N_DOS = 400"),
    "split_coplanar_lattice": ("data split --store {t}/coplanar.npz --out {t}/x.json", "outside VOLUME_PER_ATOM"),
    "split_one_structure": ("data split --store {t}/one.npz --out {t}/x.json", "would be empty"),
    "train_zero_lattice_store": (T_TRAIN.replace("{t}/s.npz", "{t}/zero_lattice.npz"), "outside CELL_LENGTH"),
    "train_empty_validation": (T_TRAIN.replace("{t}/split.json", "{t}/noval.json"), "empty validation part"),
    "sample_target_all_zero": (T_SAMPLE + " --target-dos {t}/zero_target.npy", "is zero everywhere"),
    "sample_target_huge": (T_SAMPLE + " --target-dos {t}/huge_target.npy", "beyond MAX_DOS"),
    "sample_template_huge_cell": (T_SAMPLE.replace("--num-atoms 2", "--template {t}/huge_cell.cif --t0 5"),
                                  "outside CELL_LENGTH"),
    "sample_num_atoms_100000": (T_SAMPLE.replace("--num-atoms 2", "--num-atoms 100000"), "MAX_ATOMS = 500"),
    "study_natoms_100000": (T_STUDY + " --natoms 4 100000", "MAX_ATOMS = 500"),
    # values the code would silently change
    "sample_steps_beyond_T": (T_SAMPLE + " --steps 1000000", "more than the model's T = 20"),
    "regenerate_steps_beyond_T": (T_REGEN.replace("--steps 2", "--steps 1000000"), "more than the model's T = 20"),
    "sample_omega_1e300": (T_SAMPLE + " --omega 1e300", "above MAX_GUIDANCE_WEIGHT"),
    "sample_guidance_scale_1e300": (T_SAMPLE + " --guidance-scale 1e300", "above MAX_GUIDANCE_WEIGHT"),
    "regenerate_omega_geometry_1e300": (T_REGEN + " --omega-geometry 1e300", "above MAX_GUIDANCE_WEIGHT"),
    "study_omega_1e300": (T_STUDY + " --omega 1e300", "above MAX_GUIDANCE_WEIGHT"),
    "bench_batch_zero": ("bench --batch 0", "--batch must be >= 1, got 0"),
    # the run config
    "config_output_root": ("plan --config {t}/out_root.yaml", "outputs.results: / is the filesystem root"),
    "config_output_home": ("plan --config {t}/out_home.yaml", "is the home folder"),
    "config_output_repository": ("plan --config {t}/out_repo.yaml", "is the repository root"),
    "config_duplicated_key": ("plan --config {t}/duplicate_key.yaml", "key 'seed' is given twice"),
    "config_utf16": ("plan --config {t}/utf16.yaml", "not UTF-8 text"),
    "provenance_config_duplicated_key": ("figures provenance --run-config {t}/duplicate_key.yaml --out {t}/p.json",
                                         "key 'seed' is given twice"),
    "train_config_utf16": (T_TRAIN + " --config {t}/utf16.yaml", "not UTF-8 text"),
    # tracebacks and messages that did not name the cause
    "sample_checkpoint_is_a_folder": (T_SAMPLE.replace("{t}/diff.pt", "{t}/run"), "is a folder, not a checkpoint file"),
    "sample_template_unknown_element": (T_SAMPLE.replace("--num-atoms 2", "--template {t}/unknown_element.cif --t0 5"),
                                        "'Xx' is not a chemical element"),
    "download_id_not_mp": ("data download-mp --out {t}/mp --ids banana", "'banana' is not a Materials Project id"),
    "figures_broken_json": ("figures formation --generated cfg:1000={t}/broken.json --out {t}/figs", "cannot be read"),
    "figures_binary_csv": ("figures formation --generated cfg:1000={t}/binary.csv --out {t}/figs", "cannot be read"),
    "info_figure_extension": ("data info --store {t}/s.npz --figure {t}/hist.xyz", "a figure is one of .png"),
    "gallery_of_a_missing_folder": ("figures gallery --figures {t}/none", "--figures {t}/none is not an existing folder"),
}


@pytest.mark.parametrize("case", sorted(PLAUSIBILITY_CASES))
def test_an_absurd_value_is_refused_naming_its_bound(ws, tmp_path, capsys, monkeypatch, case):
    import shutil

    monkeypatch.delenv("MP_API_KEY", raising=False)
    t = tmp_path / "ws"
    shutil.copytree(ws, t)
    before = _checksums(t)
    template, expect = PLAUSIBILITY_CASES[case]
    code = main(template.format(t=t).split())
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2 and len(err.splitlines()) == 1, (code, err)
    assert expect.format(t=t) in err, err
    assert "Traceback" not in captured.out + captured.err
    assert _checksums(t) == before  # every input byte-identical, nothing added or half-written


def test_plausible_inputs_pass_the_same_readers(ws, tmp_path, capsys):
    """Negative control: the workspace's own store, a sane target and split go through."""
    np.save(tmp_path / "target.npy", np.ones((1, 400)))
    assert main(f"data info --store {ws}/s.npz --json {tmp_path}/i.json".split()) == 0
    assert main(f"data split --store {ws}/s.npz --out {tmp_path}/x.json".split()) == 0
    assert main((SAMPLE + f" --target-dos {tmp_path}/target.npy --steps 20 --omega 100").format(
        d=ws, o=tmp_path / "gen").split()) == 0, capsys.readouterr().err


# ---- every numeric option of every command is range-checked where it is parsed ----------------------
#: Numeric options parsed without a range, each with who checks its range instead.
UNCHECKED_NUMBERS: dict[str, str] = {
    "plan --threads": "the command (its tests read the returned exit code)",
    "plan --n-structures": "the command (its tests read the returned exit code)",
    "plan --mean-atoms": "the command (NaN included; its tests read the returned exit code)",
    "evaluate lookup --limit": "the command (its tests read the returned exit code)",
    "evaluate lookup --chunk-size": "the command (its tests read the returned exit code)",
    "data split --fractions": "split_sizes: three finite fractions >= 0 summing to 1",
    "studies screen --threshold": "any finite E_f (eV/atom) is a threshold",
    "studies window-sweep --threshold": "any finite E_f (eV/atom) is a threshold",
    "--repel-until": "SamplerOptions / PairRepulsion: a timestep >= 0",
}


def numeric_options(parser) -> dict[str, object]:
    """``"command --flag" -> type`` of every option of every command that takes a number."""
    import argparse

    from dosmatgen.commands import arguments as A

    numeric = (int, float, A.integer, A.finite, A.positive_int, A.non_negative_int, A.atom_count, A.positive,
               A.non_negative)
    found: dict[str, object] = {}

    def walk(p, words):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, child in a.choices.items():
                    walk(child, words + [name])
            elif a.option_strings and a.type in numeric:
                found[f"{' '.join(words)} {a.option_strings[0]}"] = a.type

    walk(parser, [])
    return found


def unchecked_numeric_options(parser) -> list[str]:
    from dosmatgen.commands import arguments as A

    return sorted(k for k, t in numeric_options(parser).items() if t in (int, float, A.integer, A.finite)
                  and k not in UNCHECKED_NUMBERS and k.split()[-1] not in UNCHECKED_NUMBERS)


def test_every_numeric_option_is_range_checked():
    from dosmatgen.cli import build_parser

    assert unchecked_numeric_options(build_parser()) == []


def test_a_numeric_option_without_a_range_is_found():
    """Negative control: a command registered with a plain ``type=int`` option."""
    from dosmatgen.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    sub.add_parser("new-command").add_argument("--count", type=int)
    assert unchecked_numeric_options(parser) == ["new-command --count"]


def _out_of_range(kind) -> str:
    from dosmatgen.commands import arguments as A

    return {A.positive_int: "0", A.non_negative_int: "-1", A.atom_count: "100000", A.positive: "0",
            A.non_negative: "-1"}[kind]


def _range_checked():
    from dosmatgen.cli import build_parser
    from dosmatgen.commands import arguments as A

    return {k: t for k, t in numeric_options(build_parser()).items()
            if t in (A.positive_int, A.non_negative_int, A.atom_count, A.positive, A.non_negative)}


RANGE_CHECKED = _range_checked()


@pytest.mark.parametrize("option", sorted(RANGE_CHECKED))
def test_a_number_out_of_range_stops_at_the_parser(tmp_path, capsys, monkeypatch, option):
    """Negative seeds and worker counts, zero batch sizes, 100000 atoms ...: every range-checked
    option of every command, one line naming the option, before any work (nothing is written)."""
    monkeypatch.chdir(tmp_path)
    *words, flag = option.split()
    code = main([*words, flag, _out_of_range(RANGE_CHECKED[option])])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and flag in err and "must be" in err, err
    assert "Traceback" not in captured.out + captured.err
    assert list(tmp_path.iterdir()) == []


# ---- worker pools fail fast in the parent (no hang) -----------------------------------------------
BUILD_CASES: dict[str, tuple[str, str]] = {
    "mlff_unknown": ("--mlff banana", "unknown MLFF 'banana'"),
    "timeout_negative": ("--timeout -5", "--timeout must be a finite number > 0, got -5.0"),
    "workers_zero": ("--workers 0 --mlff none", "--workers must be an integer >= 1, got 0"),
    "workers_negative": ("--workers -2", "--workers must be an integer >= 1, got -2"),
    "seed_negative": ("--seed -1", "--seed must be an integer >= 0"),
    "relax_steps_negative": ("--steps -1", "--steps must be an integer >= 0"),
    "fmax_nan": ("--fmax nan", "--fmax must be a finite number > 0"),
    "gpaw_python_missing": ("--gpaw-python /no/such/python --mlff none", "--gpaw-python /no/such/python does not exist"),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", sorted(BUILD_CASES))
def test_build_builtin_refuses_a_bad_setting_before_its_pool(tmp_path, case):
    """``python -m dev_scripts.builtin build --mlff banana`` and ``--timeout -5`` (formerly ``dosmatgen data
    build-builtin``) used to leave the pool restarting crashed workers forever: now one line in the
    parent, within the timeout, nothing written."""
    extra, expect = BUILD_CASES[case]
    argv = [sys.executable, "-m", "dev_scripts.builtin", "build", "--out", str(tmp_path / "b"),
            "--n-max", "1", *extra.split()]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and expect in err, (proc.returncode, err)
    assert list(tmp_path.iterdir()) == []


def test_build_module_entry_point_gives_one_line(tmp_path):
    """``python -m dev_scripts.builtin build`` (the build scripts' spelling) reports the same way."""
    proc = subprocess.run([sys.executable, "-m", "dev_scripts.builtin", "build", "--out", str(tmp_path / "b"),
                           "--mlff", "banana"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "python -m dev_scripts.builtin build: error: unknown MLFF 'banana'; choose one of "
        "['7net-0', 'chgnet', 'emt', 'orb', 'orb-v2', 'sevenn', 'sevennet']"], proc.stderr


# ---- broken generated crystals are invalid, never valid ---------------------------------------------
def test_score_counts_broken_and_absurd_crystals_as_invalid():
    """``--omega 1e300`` used to write NaN coordinates; a generated set keeps such samples so the
    metrics can count them (load_generated refuses none), and validity counts them as invalid."""
    from dosmatgen.evaluate.metrics import Validity

    z, x, lat = np.array([11, 17]), np.array([[0, 0, 0], [.5, .5, .5]]), np.eye(3) * 4
    items = [(z, x, lat), (z, x * np.nan, lat), (z, x + [[2.5e299, 0, 0], [0, 0, 0]], lat), (z, x, lat * 1e7),
             (z, x, lat * np.inf)]
    assert Validity().compute(items).counts == {"valid": 1, "invalid_non_finite": 2, "invalid_implausible": 2}


# ---- a full disk during train -------------------------------------------------------------------------
def test_full_disk_during_train_gives_one_line(ws, tmp_path, capsys, monkeypatch):
    """torch.save hid ENOSPC behind a RuntimeError (a traceback): checkpoints now write through a
    Python file, so the OSError reaches the CLI's one line. /dev/full stands in for a full disk."""
    import contextlib

    import dosmatgen.checkpoint as checkpoint

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    monkeypatch.setattr(checkpoint, "atomic_temp_path", lambda path: contextlib.nullcontext(Path("/dev/full")))
    out = tmp_path / "run"
    assert main(TRAIN.format(d=ws, o=out).split()) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == "dosmatgen train: error: No space left on device", captured.err
    assert not list(out.glob("*.pt")) and not list(tmp_path.glob("*.lock"))


# ---- library warnings stay off the one error line -------------------------------------------------
def test_only_the_error_line_reaches_stderr(ws, tmp_path):
    """pymatgen's CIF warnings used to print before the error of an unknown element (seen only
    outside pytest, which catches warnings: a subprocess)."""
    argv = [sys.executable, "-m", "dosmatgen.cli",
            *SAMPLE.replace("--num-atoms 2", f"--template {ws}/unknown_element.cif --t0 5").format(
                d=ws, o=tmp_path / "gen").split()]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"dosmatgen sample: error: template {ws}/unknown_element.cif: unknown_element: 'Xx' is not a chemical element"]


def test_the_case_count_the_readme_states():
    n = len(CASES) + len(CONFIG_CASES) + len(PATH_CASES) + len(PLAUSIBILITY_CASES) + len(BUILD_CASES)
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
           "studies": (STUDY, "study"),
           "formation": ("evaluate formation --store {d}/s.npz --split {d}/split.json --mlff emt --no-progress "
                         "--out {o}", "f.json")}


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


def test_two_builds_of_one_part_on_one_output(tmp_path, capsys, other_run):
    """Parts of one build share --out by design; the same part twice does not."""
    out = tmp_path / "builtin"
    out.mkdir()
    lock = _hold_lock(out / ".build-prototypes-part2of4", other_run.pid)
    from dev_scripts.builtin.cli import main as builtin_main

    assert builtin_main(f"build --out {out} --part 2/4 --n-max 1".split()) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"being written by another run (pid {other_run.pid}" in err, err
    assert sorted(p.name for p in out.iterdir()) == [lock.name]  # nothing written beside the other run's claim


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
