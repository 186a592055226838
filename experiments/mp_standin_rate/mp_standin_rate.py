"""Download rate and disk use of `dosmatgen data download-mp` with the real mp-api client against the
loopback stand-ins of tests/mp_standins.py (REST + moto S3 serving the real Fe mp-13 and Si mp-149
documents as Delta tables, each material id mapped to one of them).

Loopback has no network latency: the rate is an upper bound of what the real Materials Project
gives (REST round trips of ~0.1-0.5 s and S3 reads from us-east-1 add to every call). Disk per
material: the shards here repeat two DOS, which compress unrealistically well, so the estimate per
1,000 MP materials uses the bytes per atom of the built-in store (the same compressed float16
format, 1,528 distinct GPAW structures) times the mean atom count of MP-20 (resources/mp20).

    .venv/bin/python experiments/mp_standin_rate/mp_standin_rate.py --n 300 --out results/mp_standin_rate.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the repository root
sys.path.insert(0, str(REPO / "tests"))

from mp_standins import RestStandIn, S3StandIn, real_documents  # noqa: E402

from dosmatgen.data.mp import download_mp  # noqa: E402
from dosmatgen.io import atomic_save_json  # noqa: E402

PAPER_MATERIALS = 50_790  # the paper's MP-DOS set (DESIGN §3.2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=300, help="material ids to download (default 300)")
    p.add_argument("--batch-size", type=int, default=200, help="download-mp --batch-size (default 200, its default)")
    p.add_argument("--min-interval", type=float, default=0.2, help="seconds between REST calls (default 0.2, its default)")
    p.add_argument("--out", default="results/mp_standin_rate.json", help="JSON to write")
    args = p.parse_args()

    docs = real_documents()
    usable = {m: docs[m] for m in ("mp-13", "mp-149")}
    ids = [f"mp-{1000000 + i}" for i in range(args.n)]
    es = {m: usable["mp-13" if i % 2 == 0 else "mp-149"][0] for i, m in enumerate(ids)}
    atoms = {m: (1 if i % 2 == 0 else 2) for i, m in enumerate(ids)}
    with S3StandIn(usable) as s3, RestStandIn([], es) as rest, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(MP_API_ENDPOINT=rest.url, AWS_ENDPOINT_URL=s3.url, AWS_ALLOW_HTTP="true")
        t0 = time.perf_counter()
        summary = download_mp(Path(tmp) / "mp", api_key="k" * 32, material_ids=ids, batch_size=args.batch_size,
                              min_interval=args.min_interval, progress=False)
        seconds = time.perf_counter() - t0
        shard_bytes = sum(f.stat().st_size for f in (Path(tmp) / "mp").glob("shard-*.npz"))
        rest_calls = sum(1 for path, _ in rest.requests if "/materials/" in path)
    n_atoms = sum(atoms.values())
    pool = json.loads((REPO / "resources" / "mp20" / "mp20_pool.json").read_text())["structures"]
    mean_atoms_mp20 = sum(len(s["species"]) for s in pool) / len(pool)
    from dosmatgen.data.store import DOSStore

    builtin = REPO / "resources" / "builtin_dos.npz"
    per_atom = builtin.stat().st_size / DOSStore(builtin).total_atoms
    rate = summary.done / seconds
    result = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "what": "real mp-api client against loopback stand-ins (no network latency: an upper bound of the rate)",
        "materials": args.n, "converted": summary.done, "batch_size": args.batch_size,
        "min_interval_s": args.min_interval, "rest_calls": rest_calls, "seconds": round(seconds, 2),
        "materials_per_second": round(rate, 2),
        "hours_for_paper_set_at_this_rate": round(PAPER_MATERIALS / rate / 3600, 2),
        "paper_set_materials": PAPER_MATERIALS,
        "shard_bytes": shard_bytes, "atoms": n_atoms,
        "shard_bytes_per_atom_here": round(shard_bytes / n_atoms, 1),
        "bytes_per_atom_builtin_store": round(per_atom, 1),
        "mean_atoms_mp20": round(mean_atoms_mp20, 2),
        "estimated_MB_per_1000_materials": round(per_atom * mean_atoms_mp20 * 1000 / 1e6, 2),
        "host_cores": os.cpu_count(),
    }
    atomic_save_json(args.out, result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
