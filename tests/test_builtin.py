"""Prototypes, candidate ordering, ledger/shards/merge of the built-in dataset builder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dev_scripts.builtin import build as builtin
from dev_scripts.builtin.prototypes import ANIONS, PROTOTYPES, cation_states, is_magnetic, substitutions
from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.store import load_meta, load_records, save_records
from dosmatgen.dos.gpaw_engine import GPAW_ELEMENTS
from dosmatgen.errors import DataError

REQUIRED = {"rocksalt", "CsCl", "B2", "zincblende", "wurtzite", "fluorite", "antifluorite", "rutile",
            "perovskite", "L12", "L10", "halfHeusler", "Heusler", "NiAs", "CdI2"}


def test_prototypes_build_valid_cells():
    assert REQUIRED <= set(PROTOTYPES)
    for name, proto in PROTOTYPES.items():
        subs = substitutions(proto)
        assert len(subs) >= 10, name
        for elements in subs[:: max(1, len(subs) // 5)]:
            assert set(elements) <= GPAW_ELEMENTS
            rec = proto.build(elements)
            assert 2 <= rec.num_atoms <= 8
            rec.validate(check_distances=True)
            assert rec.min_distance() > 1.2, (name, elements, rec.min_distance())


def test_ionic_substitutions_are_charge_neutral():
    for name, proto in PROTOTYPES.items():
        if proto.kind != "ionic" or name == "perovskite":
            continue
        for a, x in substitutions(proto):
            n_a, n_x = proto.counts
            assert any(s * n_a == -ANIONS[x] * n_x for s in cation_states(a)), (name, a, x)


def test_targets_present_and_first():
    au3ni = PROTOTYPES["L12"].build(("Ni", "Au"))
    assert au3ni.to_structure().composition.reduced_formula in ("Au3Ni", "NiAu3") and au3ni.atomic_numbers[0] == 28
    assert 3.7 < np.linalg.norm(au3ni.lattice[0]) < 4.3
    iro2 = PROTOTYPES["rutile"].build(("Ir", "O"))
    assert iro2.formula == "IrO2" and list(iro2.atomic_numbers[:2]) == [77, 77]
    c = builtin.candidates(0, 50)
    assert [x.structure_id for x in c[:2]] == ["builtin-L12-Ni-Au", "builtin-rutile-Ir-O"]


def test_candidates_deterministic_unique_and_interleaved():
    a = builtin.candidates(0, 400)
    assert [x.structure_id for x in a] == [x.structure_id for x in builtin.candidates(0, 400)]
    assert [x.structure_id for x in a] != [x.structure_id for x in builtin.candidates(1, 400)]
    assert len({x.structure_id for x in a}) == 400
    first = a[2:60]
    assert len({x.prototype for x in first}) >= 12  # prototypes interleaved
    assert sum(x.magnetic for x in first) < len(first) / 3  # cheap (non-magnetic) cells first
    assert np.mean([x.cost for x in a[2:100]]) < np.mean([x.cost for x in a[300:400]]) + 1e-9
    elements = {e for x in a[:200] for e in x.elements}
    assert len(elements) >= 50
    assert all(is_magnetic(x.elements) == x.magnetic for x in a)


def _fake(sid: str) -> CrystalRecord:
    return CrystalRecord(sid, [11, 17], [[0, 0, 0], [.5, .5, .5]], np.eye(3) * 4, np.ones((2, 400)),
                         {"prototype": "rocksalt"})


def test_ledger_skip_and_merge(tmp_path):
    out = tmp_path / "shards"
    out.mkdir()
    save_records(out / "shard-00001.npz", [_fake("a"), _fake("b")], {"protocol": {"basis": "dzp"}, "command": "x"})
    save_records(out / "shard-00002.npz", [_fake("c"), _fake("a")], {"protocol": {"basis": "dzp"}})
    with open(out / builtin.LEDGER, "w") as fh:
        for sid in "abc":
            fh.write(json.dumps({"id": sid, "status": "done"}) + "\n")
        fh.write(json.dumps({"id": "d", "status": "failed", "reason": "SCF"}) + "\n")
        fh.write('{"id": "e", "sta')  # a line cut by a crash is ignored
    ledger = builtin.read_ledger(out)
    assert set(ledger) == {"a", "b", "c", "d"} and ledger["d"]["reason"] == "SCF"
    store = tmp_path / "store.npz"
    meta = builtin.merge(out, store)
    assert meta["n_records"] == 3 and meta["n_failed"] == 1 and meta["elements"] == ["Cl", "Na"]
    assert sorted(r.structure_id for r in load_records(store)) == ["a", "b", "c"]
    assert load_meta(store)["protocol"] == {"basis": "dzp"}
    assert "merge_command" in load_meta(store)
    with pytest.raises(DataError, match="no shards"):
        builtin.merge(tmp_path / "empty", store)


def test_info_counts_a_build_folder_without_merging(tmp_path, capsys):
    from dosmatgen.cli import main

    save_records(tmp_path / "shard-00001.npz", [_fake("a"), _fake("b")], {"protocol": {"basis": "dzp"}})
    save_records(tmp_path / "shard-part1of2-00001.npz", [_fake("c"), _fake("a")], {"protocol": {"basis": "dzp"}})
    builtin._append_ledger(tmp_path, [{"id": "d", "status": "failed", "reason": "SCF"}])
    fig = tmp_path / "a.png"
    assert main(["data", "info", "--store", str(tmp_path), "--plot-site", "c:Cl", "--out", str(fig)]) == 0
    text = capsys.readouterr().out
    assert "structures: 3" in text and "n_failed: 1" in text and "site 1" in text
    assert fig.exists() and not list(tmp_path.glob("*.npz.tmp"))
    assert main(["data", "info", "--store", str(tmp_path), "--plot-site", "zz:0", "--out", str(fig)]) == 2
    assert "'zz' is not in the shards" in capsys.readouterr().err


def test_build_skips_everything_in_ledger(tmp_path):
    cands = builtin.candidates(0, 3)
    with open(tmp_path / builtin.LEDGER, "w") as fh:
        for c in cands:
            fh.write(json.dumps({"id": c.structure_id, "status": "failed", "reason": "test"}) + "\n")
    counts = builtin.build(tmp_path, n_max=3, workers=1, progress=False)
    assert counts == {"done": 0, "failed": 0, "todo": 0}


def test_cli_arguments():
    import argparse

    p = argparse.ArgumentParser()
    builtin.add_build_arguments(p)
    args = p.parse_args(["--out", "x", "--workers", "3", "--n-max", "10", "--merge-only", "--store", "s.npz"])
    assert args.workers == 3 and args.n_max == 10 and args.merge_only and args.store == "s.npz"
    assert args.gpaw_python == "/usr/bin/python3"
    assert p.parse_args(["--gpaw-python", "/opt/gpaw/bin/python"]).gpaw_python == "/opt/gpaw/bin/python"
    with pytest.raises(DataError, match="--store"):
        builtin.run_build(p.parse_args(["--merge-only"]))


def test_parts_are_disjoint_exhaustive_and_stable():
    cands = builtin.candidates(0, 50)
    parts = [builtin.select_part(cands, (i, 4)) for i in range(1, 5)]
    ids = [c.structure_id for p in parts for c in p]
    assert sorted(ids) == sorted(c.structure_id for c in cands) and len(set(ids)) == len(ids)
    assert [c.structure_id for c in builtin.select_part(builtin.candidates(0, 50), (3, 4))] == \
        [c.structure_id for c in parts[2]]
    assert builtin.select_part(cands, None) == cands
    for bad in ("0/4", "5/4", "2", "a/b"):
        with pytest.raises(DataError, match="--part"):
            builtin.parse_part(bad)


def test_parts_have_their_own_ledgers_and_shards(tmp_path):
    save_records(tmp_path / "shard-00007.npz", [_fake("a")], {"protocol": {"basis": "dzp"}})
    save_records(tmp_path / "shard-part2of4-00001.npz", [_fake("b")], {"protocol": {"basis": "dzp"}})
    assert builtin._next_shard_index(tmp_path) == 8
    assert builtin._next_shard_index(tmp_path, "shard-part2of4-") == 2
    assert builtin._next_shard_index(tmp_path, "shard-part1of4-") == 1
    builtin._append_ledger(tmp_path, [{"id": "a", "status": "done"}])
    name, _ = builtin.part_files((2, 4))
    builtin._append_ledger(tmp_path, [{"id": "b", "status": "done"}, {"id": "c", "status": "failed"}], name)
    assert set(builtin.read_ledger(tmp_path)) == {"a", "b", "c"}  # every part's ledger is read
    meta = builtin.merge(tmp_path, tmp_path / "store.npz")
    assert meta["n_records"] == 2 and meta["n_failed"] == 1


def test_build_part_skips_other_parts_work(tmp_path):
    """A part only sees its own candidates, and skips those any ledger already has."""
    cands = builtin.select_part(builtin.candidates(0, 6), (2, 3))
    name, _ = builtin.part_files((2, 3))
    builtin._append_ledger(tmp_path, [{"id": c.structure_id, "status": "failed"} for c in cands], name)
    assert builtin.build(tmp_path, n_max=6, workers=1, progress=False, part=(2, 3)) == \
        {"done": 0, "failed": 0, "todo": 0}


def test_slurm_array_script_maps_task_ids_to_parts():
    import os
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "label_slurm_array.sh"
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="5", SLURM_ARRAY_TASK_MIN="3", SLURM_ARRAY_TASK_COUNT="8",
               SLURM_CPUS_PER_TASK="16", DOSMATGEN_DRY_RUN="1")
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True).stdout
    assert "--part 3/8" in out and "--workers 16" in out
    env.pop("SLURM_ARRAY_TASK_ID")
    bad = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "sbatch --array" in bad.stderr


def _build_at_work(tmp_path):
    """A build of one structure whose GPAW is a fake that writes its pid and job folder to
    ``tmp_path/started`` and sleeps; returned once that fake has started (the negative control of
    the stop tests: their signals meet a build at work), with the file."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    started = tmp_path / "started"
    fake = tmp_path / "fake_python"
    fake.write_text(f"#!/bin/sh\necho $$ $(dirname \"$2\") > {started}\nexec sleep 60\n")
    fake.chmod(0o755)
    build = subprocess.Popen([sys.executable, "-m", "dev_scripts.builtin", "build", "--out", str(tmp_path / "out"),
                              "--workers", "1", "--n-max", "1", "--mlff", "none", "--gpaw-python", str(fake)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline and build.poll() is None:
        time.sleep(0.2)
    assert started.exists(), build.communicate()[0]
    time.sleep(0.3)
    return build, started


def test_stopped_build_leaves_no_gpaw_running(tmp_path):
    """SIGTERM to a running build (how a queue or a person stops it) ends the GPAW process of each
    pool worker and removes its job folder; negative control: the fake GPAW did start."""
    import os
    import signal

    build, started = _build_at_work(tmp_path)
    pid, job_dir = started.read_text().split()
    build.send_signal(signal.SIGTERM)
    assert build.wait(timeout=30) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)
    assert not os.path.exists(job_dir)


def test_build_told_to_stop_again_and_again_still_stops_cleanly(tmp_path):
    """A queue or an impatient person may signal a stopping build again while it saves: every
    further SIGTERM/SIGINT is ignored until the finished records are written, so no traceback, and
    the exit is 0. Once the saving is over and the old handlers are back, a late signal may still
    end the process the ordinary way: SIGTERM's default death, a SIGINT that the command turns into
    exit 130, or one that lands in interpreter shutdown (default SIGINT death, -2; seen once in CI).
    Negative control: the fake GPAW did start, so the signals met a build at work."""
    import itertools
    import signal
    import time

    build, _ = _build_at_work(tmp_path)
    for sig in itertools.islice(itertools.cycle([signal.SIGTERM, signal.SIGTERM, signal.SIGINT]), 200):
        if build.poll() is not None:
            break
        build.send_signal(sig)
        time.sleep(0.02)
    out = build.communicate(timeout=30)[0]
    assert build.returncode in (0, 130, -signal.SIGTERM, -signal.SIGINT), out
    assert "Traceback" not in out, out
    assert "interrupted: writing finished records" in out
