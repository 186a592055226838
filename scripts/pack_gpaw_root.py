"""Pack this machine's Debian GPAW (python3.11, numpy, scipy, ase, gpaw, their shared libraries
and the PAW setups the jobs need) into one tar.xz that unpacks into a chroot on a host without
GPAW or a network (a lent GPU machine's CPU cores). Run it with the interpreter that has GPAW:

    /usr/bin/python3 scripts/pack_gpaw_root.py --jobs .devpack/jobs --out .devpack/gpaw_root.tar.xz

The file list is traced, not guessed: the standalone worker runs two tiny jobs made from the first
exported one (fcc Al, and spin-polarised fcc Ni), and every module it imported and every file it
mapped (shared libraries, Open MPI components) is kept, with the symbolic links that name them;
then all of gpaw, the standard library without its tests, Open MPI's and PMIx's component and help
folders, `/etc/alternatives` (Debian's BLAS/LAPACK links), and `{E}.PBE.gz` / `{E}.dzp.basis.gz`
for every element of the jobs. hwloc's optional plugins (and the X11, libxml2 and ICU libraries
only they need) are left out: about 40 MB packed. scripts/label_on_device.sh unpacks and runs it.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = Path(__file__).resolve().parents[1] / "dosmatgen" / "dos" / "gpaw_worker.py"
TRACER = """
import atexit, runpy, sys
def dump():
    files = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
    files |= {p.split()[5] for p in open("/proc/self/maps") if len(p.split()) >= 6 and p.split()[5].startswith("/")}
    open(sys.argv[-1] + ".files", "w").write("\\n".join(sorted(f for f in files if f)))
atexit.register(dump)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
WHOLE = ("/usr/lib/x86_64-linux-gnu/openmpi", "/usr/lib/x86_64-linux-gnu/pmix2", "/usr/share/openmpi",
         "/usr/share/pmix", "/etc/alternatives", "/usr/lib/python3/dist-packages/gpaw")
STDLIB_SKIP = {"__pycache__", "test", "tests", "idlelib", "tkinter", "ensurepip", "lib2to3", "turtledemo",
               "site-packages", "dist-packages", "config-3.11-x86_64-linux-gnu"}
LEAVE_OUT = ("x86_64-linux-gnu/hwloc/", "libX11", "libxcb", "libXNVCtrl", "libXext", "libXau", "libXdmcp",
             "libxml2", "libicu", "libssl", "_ssl.cpython")


def traced_files(template: dict, work: Path) -> set[str]:
    files: set[str] = set()
    for name, z, a, spin in (("al", 13, 4.05, False), ("ni", 28, 3.52, True)):
        job = dict(template, numbers=[z], cell=[[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]],
                   scaled_positions=[[0, 0, 0]], spinpol=spin, equivalent_classes=[[0]], kdens_scf=4.0, kdens_dos=6.0)
        (work / f"{name}.job.json").write_text(json.dumps(job))
        out = work / f"{name}.out.npz"
        env = dict(os.environ, OMP_NUM_THREADS="1")
        subprocess.run([sys.executable, "-c", TRACER, str(WORKER), str(work / f"{name}.job.json"), str(out)],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        files |= set(Path(f"{out}.files").read_text().split())
    return files


def walk(root: str, skip: set[str] = frozenset()) -> set[str]:
    out = set()
    for d, dirs, names in os.walk(root):
        dirs[:] = [x for x in dirs if x not in skip]
        out |= {os.path.join(d, n) for n in names if not n.endswith(".pyc")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", required=True, help="exported jobs (python -m dev_scripts.builtin export-jobs)")
    ap.add_argument("--out", required=True, help="the .tar.xz to write")
    args = ap.parse_args()
    from ase.data import chemical_symbols

    jobs = sorted(glob.glob(os.path.join(args.jobs, "*.job.json")))
    if not jobs:
        sys.exit(f"pack_gpaw_root: no *.job.json in {args.jobs}")
    with tempfile.TemporaryDirectory() as tmp:
        files = traced_files(json.loads(Path(jobs[0]).read_text()), Path(tmp))
    files |= walk("/usr/lib/python3.11", STDLIB_SKIP) | {"/usr/bin/python3.11"}
    for root in WHOLE:
        files |= walk(root)
    elements = {"Al", "Ni"} | {chemical_symbols[z] for j in jobs for z in json.loads(Path(j).read_text())["numbers"]}
    for e in elements:
        files |= {f"/usr/share/gpaw-setups/{e}.PBE.gz", f"/usr/share/gpaw-setups/{e}.dzp.basis.gz"}
    files |= set(glob.glob("/etc/ld.so.*")) | set(glob.glob("/etc/ld.so.conf.d/*"))
    top_links = {p for p in ("/lib", "/lib64", "/bin", "/sbin") if os.path.islink(p)}
    files = {f for f in files if os.path.lexists(f) and not any(x in f for x in LEAVE_OUT)
             and not any(f.startswith(t + "/") for t in top_links)}
    real = {os.path.realpath(f) for f in files}
    for d in {os.path.dirname(f) for f in files} | {"/usr/lib64"}:  # sonames, the ELF loader, other links
        for n in (os.listdir(d) if os.path.isdir(d) else []):
            p = os.path.join(d, n)
            if os.path.islink(p) and os.path.realpath(p) in real:
                files.add(p)
    files |= top_links
    listing = "\n".join(sorted(f.lstrip("/") for f in files)) + "\n"
    out = Path(args.out).resolve()
    tmp_out = out.with_name(out.name + ".part")
    with open(tmp_out, "wb") as fh:
        tar = subprocess.Popen(["tar", "-C", "/", "-cf", "-", "--no-recursion", "-T", "-"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE)
        xz = subprocess.Popen(["xz", "-T0", "-9"], stdin=tar.stdout, stdout=fh)
        tar.stdin.write(listing.encode())
        tar.stdin.close()
        if tar.wait() or xz.wait():
            sys.exit("pack_gpaw_root: tar or xz failed")
    os.replace(tmp_out, out)
    print(f"{len(files)} paths, {len(elements)} elements -> {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
