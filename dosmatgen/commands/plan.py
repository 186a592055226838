"""``dosmatgen plan``: the estimated wall time of each workflow target of a run profile on this
machine, from rates measured here (a few minutes) or saved earlier; see :mod:`dosmatgen.plan`.

    dosmatgen plan --profile demo --recorded results/demo_run/run.jsonl
    dosmatgen plan --profile paper --rates results/plan/rates_demo_cpu.json
    dosmatgen plan --profile paper --bench results/gpu_check/bench_cuda.json    # recorded H200 rates
    dosmatgen plan --profile paper --bench results/bench_paper.json --rates results/plan/rates_cpu_demo.json
    dosmatgen plan --profile paper --save-rates rates_gpu.json --device cuda     # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from dosmatgen.commands.arguments import declare_paths, integer
from dosmatgen.errors import ConfigError

TARGETS = ("models", "tables", "studies", "tables_dft")


def _data_size(cfg: dict[str, Any], args: argparse.Namespace):
    from dosmatgen.plan import MP_MEAN_ATOMS, MP_STORE_SIZE, DataSize

    split = tuple(float(x) for x in cfg["data"]["split"])  # the validated config carries the schema's default
    if args.n_structures is not None:
        return DataSize(args.n_structures, args.mean_atoms or MP_MEAN_ATOMS, split), "given on the command line"
    source = cfg["data"]["source"]
    if source == "builtin":
        from dosmatgen.data.store import DOSStore

        store = DOSStore(cfg["data"]["builtin_store"])
        atoms = sum(store[i].num_atoms for i in range(len(store))) / len(store)
        return DataSize(len(store), args.mean_atoms or atoms, split), f"built-in store {cfg['data']['builtin_store']}"
    return (DataSize(MP_STORE_SIZE, args.mean_atoms or MP_MEAN_ATOMS, split),
            f"the paper's Materials Project set ({MP_STORE_SIZE} structures, MP-20-like sizes)")


def _records(cfg: dict[str, Any], data_source: str, n: int = 256):
    if data_source == "builtin":
        from dosmatgen.data.store import DOSStore

        store = DOSStore(cfg["data"]["builtin_store"])
        return [store[i] for i in range(0, len(store), max(1, len(store) // n))][:n]
    from dosmatgen.bench import mp20_like_crystals

    return mp20_like_crystals(n, 0)


def _recorded(paths: list[str]) -> dict[str, float]:
    """Wall seconds per target from run records (``results/demo_run/run.jsonl``): rows whose
    target names start with models / tables / studies, summed within a record; a target in a
    later record replaces the earlier records' (e.g. a clean rerun of one target)."""
    out: dict[str, float] = {}
    for path in paths:
        try:
            lines = Path(path).read_text().splitlines()
            rows = [json.loads(line) for line in lines if line.strip()]
            found: dict[str, float] = {}
            for row in rows:
                target = str(row.get("target", ""))
                for t in sorted(TARGETS, key=len, reverse=True):  # tables_dft before tables
                    if target.startswith(t):
                        found[t] = found.get(t, 0.0) + float(row["wall_s"])
                        break
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read run record {path}: {exc}") from exc
        out.update(found)
    return out


def _cmd_plan(args: argparse.Namespace) -> int:
    from dosmatgen.config import load_run_config
    from dosmatgen.io import atomic_save_json, check_writable
    from dosmatgen.plan import Rates, estimate, human, measure_rates, per_target, workload

    for flag, value in (("--n-structures", args.n_structures), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    if args.mean_atoms is not None and not (math.isfinite(args.mean_atoms) and args.mean_atoms > 0):
        raise ConfigError(f"--mean-atoms must be a positive number, got {args.mean_atoms}")
    path = args.config or f"config/{args.profile}.yaml"
    # plan for the data the profile would use with an MP key (source auto -> mp), keyless or not
    cfg = load_run_config(path, environ={**os.environ, "MP_API_KEY": os.environ.get("MP_API_KEY") or "planning"})
    for p in (args.save_rates, args.json):
        if p:
            check_writable(p)
    recorded = _recorded(args.recorded) if args.recorded else {}
    data, data_how = _data_size(cfg, args)
    rates = Rates.load(args.rates) if args.rates else None
    if args.bench:
        from dosmatgen.plan import combine, rates_from_bench

        bench = rates_from_bench(args.bench, cfg["model"]["size"], int(cfg["train"]["diffusion"]["batch_size"]))
        rates = combine(bench, rates) if rates is not None else bench
    jobs = workload(cfg, data)
    print(f"plan for {path} (profile {cfg.get('profile')}): {data.n_store} structures ({data_how}), "
          f"{data.n_train} train / {data.n_val} val / {data.n_test} test, {data.mean_atoms:.1f} atoms per cell")
    if rates is None:
        device = cfg.get("device", "cpu") if args.device is None else args.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        import torch

        torch.set_num_threads(args.threads or int(cfg.get("threads", 1)))
        print(f"measuring rates on {device} with the profile's model size {cfg['model']['size']!r}, "
              f"{torch.get_num_threads()} torch thread(s) (a few minutes) ...", flush=True)
        ledgers = sorted(Path("resources/builtin").glob("ledger*.jsonl"))
        screen_dft = sorted(Path("work", str(cfg.get("profile"))).glob("studies/screen.work/*/dft/*.json"))
        # generated cells labelled by any earlier DFT judge here (the workflow's, or scripts/dft_judge_demo.sh)
        for pattern in ("*/dft_judge/labels/*.json", "dft_judge/labels/*.json"):
            screen_dft += sorted(Path("work").glob(pattern))
        rates = measure_rates(cfg, _records(cfg, cfg["data"]["source"]), device, ledgers=ledgers,
                              screen_dft=screen_dft)
        if args.save_rates:
            atomic_save_json(args.save_rates, rates.to_dict())
            print(f"rates -> {args.save_rates}")
    rows, missing = estimate(jobs, rates)
    totals = per_target(rows)
    print()
    print(f"{'target':<10} {'rule':<18} {'job':<22} {'estimate':>10}")
    partial = set()
    for r in rows:
        est = human(r["seconds"])
        if r["missing"] or r["lower_bound"]:
            partial.add(r["target"])
            est = f">= {est}" if r["seconds"] else "n/m"
        print(f"{r['target']:<10} {r['rule']:<18} {r['label']:<22} {est:>10}")
    print()
    for t in TARGETS:
        line = f"{t:<10} estimated {('>= ' if t in partial else '') + human(totals.get(t, 0.0)):>13}"
        if t in recorded:
            ratio = totals.get(t, 0.0) / recorded[t]
            line += f"   recorded {human(recorded[t]):>10}   estimate / recorded {ratio:.2f}"
        print(line)
    in_all = [t for t in TARGETS if t != "tables_dft"]  # the workflow's `all` (tables_dft is asked for apart)
    total = human(sum(totals.get(t, 0.0) for t in in_all))
    print(f"{'all':<10} estimated {('>= ' if partial & set(in_all) else '') + total:>13}")
    if missing:
        print(f"n/m = not measured; >= = a lower bound (no rate for {', '.join(missing)})")
    if rates.lower_bounds:
        print(f">= also marks jobs using a rate that is itself a lower bound: {', '.join(sorted(rates.lower_bounds))}")
    print("assumptions: jobs run one after another; generated crystals relax to the step cap, ground-truth "
          f"ones for half of it; GPAW: {rates.how.get('gpaw_cell_parallel', 'not measured')}")
    if args.json:
        atomic_save_json(args.json, {"config": path, "profile": cfg.get("profile"), "data": vars(data) | {
            "how": data_how}, "rates": rates.to_dict(), "jobs": rows, "targets": totals, "recorded": recorded,
            "missing_rates": missing})
        print(f"plan -> {args.json}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plan", help="estimated wall time of each workflow target (measured rates x sizes)",
                              description="Estimate what a run profile costs on this machine before starting it: "
                                          "each workflow job's units of work (optimiser steps, sampler steps, "
                                          "StructureMatcher pairs, FIRE steps x atoms, GPAW cells) times the "
                                          "seconds per unit measured here with the profile's own model and batch "
                                          "sizes.",
                              epilog="\n\n".join((__doc__ or "").split("\n\n")[1:]),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()  # which run config
    src.add_argument("--profile", default="demo", help="a run profile: config/<profile>.yaml (default demo)")
    src.add_argument("--config", default=None, help="a run config YAML instead of --profile")
    p.add_argument("--rates", default=None, help="use rates saved by --save-rates instead of measuring")
    p.add_argument("--bench", default=None, help="use the (partial) rates of a `dosmatgen bench --json` file, "
                   "e.g. results/gpu_check/bench_cuda.json recorded on a lent H200; with --rates, the bench "
                   "gives the model-size units and the rates file the others")
    p.add_argument("--save-rates", default=None, help="write the measured rates (JSON) for later --rates")
    p.add_argument("--device", default=None, help="measure on this device (default: the config's)")
    p.add_argument("--threads", type=integer, default=None, help="torch threads while measuring (default: the "
                   "config's threads, what its jobs use)")
    p.add_argument("--n-structures", type=integer, default=None, help="dataset size to plan for (default: the "
                   "built-in store's, or the paper's 50,790 for Materials Project data)")
    p.add_argument("--mean-atoms", type=float, default=None, help="atoms per cell to plan for")
    p.add_argument("--recorded", action="append", default=None, metavar="RECORD",
                   help="a run record (results/demo_run/run.jsonl) to compare with; repeatable, a target in a later "
                   "record replaces the earlier ones'")
    p.add_argument("--json", default=None, help="also write the plan as JSON")
    declare_paths(p, inputs=("config", "rates", "bench", "recorded"), outputs={"save_rates": "file", "json": "file"})
    p.set_defaults(func=_cmd_plan)
