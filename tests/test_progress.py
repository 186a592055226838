"""Progress a user can see (issue 36 item 7): with bars off (``--no-progress``, every workflow
log) long jobs write ``[what] done/total unit (pct%), rate, ETA h:mm:ss`` lines at most every
``DOSMATGEN_PROGRESS_EVERY`` seconds and at the end of a job that printed one.

The workflow test runs the ci profile's training job through Snakemake, as a user would, and reads
its log while it runs; the negative control (interval 1000 s) sees no progress line: a job shorter
than the interval prints none.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from dosmatgen.progress import Lines, bar
from test_workflow import SNAKEFILE, SNAKEMAKE, write_config

LINE = re.compile(r"^\[train diffusion\] \d+/210 steps \(\d+%\), [\d.e+]+ steps/s, ETA \d+:\d\d:\d\d, loss=")


def test_lines_every_interval_and_at_the_end(monkeypatch, capsys):
    monkeypatch.setenv("DOSMATGEN_PROGRESS_EVERY", "0")
    assert list(bar(False, range(3), desc="chunks", unit="chunks")) == [0, 1, 2]
    out = capsys.readouterr().err.splitlines()
    assert out[0].startswith("[chunks] 1/3 chunks (33%), ") and "3/3 chunks (100%)" in out[-1] and len(out) == 3  # no repeat at close
    monkeypatch.setenv("DOSMATGEN_PROGRESS_EVERY", "1000")  # negative control: a short job prints nothing
    lines = Lines(total=10, desc="x", initial=2)
    lines.update(3)
    lines.close()
    assert capsys.readouterr().err == ""
    lines = Lines(total=10, desc="x", initial=2)  # one that ran a whole interval prints its last line once
    lines.set_postfix(loss="0.5")
    lines.update(3)
    lines.t0 -= 1000
    lines.close()
    lines.close()
    out = capsys.readouterr().err.splitlines()
    assert len(out) == 1 and re.match(r"^\[x\] 5/10 it \(50%\), [\d.e+]+ it/s, ETA \d:\d\d:\d\d, loss=0.5$", out[0]), out
    Lines(total=1, disable=True).close()  # a bar shown, or another rank: nothing
    assert capsys.readouterr().err == ""
    assert isinstance(bar(True, total=1, disable=True), __import__("tqdm").tqdm)


def run_training(cwd, every: str, forcerun: bool = False) -> tuple[int, list[str], str]:
    """The ci profile's diffusion job under Snakemake; (exit code, progress lines of its log read
    while the job ran, the whole log)."""
    log = cwd / "work/ci/logs/train_diffusion_best.log"
    cmd = [str(SNAKEMAKE), "-s", str(SNAKEFILE), "--nolock", "-d", str(cwd), "--configfile", str(cwd / "run.yaml"),
           "--cores", "1", "work/ci/models/diffusion/best.pt"] + (["--forcerun", "train"] if forcerun else [])
    env = dict(os.environ, DOSMATGEN_PROGRESS_EVERY=every, OMP_NUM_THREADS="1",
               PATH=f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: list[str] = []
    while proc.poll() is None and not (cwd / "work/ci/models/diffusion/final.pt").exists():
        if log.exists():
            seen += [ln for ln in log.read_text().splitlines() if ln.startswith("[") and ln not in seen]
        time.sleep(0.1)
    return proc.wait(timeout=120), seen, log.read_text()


def test_training_log_gains_progress_lines_while_it_runs(tmp_path):
    write_config(tmp_path, train={"diffusion": {"epochs": 30, "batch_size": 1, "max_steps": 10 ** 6}})  # 210 steps
    rc, seen, text = run_training(tmp_path, "0.3")
    assert rc == 0, text
    assert len(seen) >= 2 and all(LINE.match(ln) for ln in seen), text
    assert "210/210 steps (100%)" in text.splitlines()[-2] and "trained diffusion" in text.splitlines()[-1]

    rc, _, text = run_training(tmp_path, "1000", forcerun=True)  # negative control
    assert rc == 0, text
    assert not [ln for ln in text.splitlines() if LINE.match(ln)] and "trained diffusion" in text, text


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
