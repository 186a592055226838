"""``dosmatgen bench``: training throughput, sampling time per step (with / without CFG) and peak
memory per model size; see :mod:`dosmatgen.bench`.

    dosmatgen bench                      # compact and paper size, batch 256
    dosmatgen bench --quick              # tiny size, small batches (seconds)
    dosmatgen bench --sizes compact --batch 256 --steps 5 --json bench.json
"""

from __future__ import annotations

import argparse

from dosmatgen.commands.arguments import declare_paths, non_negative_int, positive_int
from dosmatgen.model.config import TYPE_TARGETS


def _cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from dosmatgen.bench import BenchContext, crystals_from_json, mp20_like_crystals, run_benchmarks
    from dosmatgen.io import atomic_save_json
    from dosmatgen.device import resolve_device

    sizes = [s.strip() for s in (args.sizes or ("tiny" if args.quick else "compact,paper")).split(",") if s.strip()]
    batch = args.batch or (32 if args.quick else 256)
    sample_batch = args.sample_batch or (32 if args.quick else 256)
    steps = args.steps or (2 if args.quick else 3)
    train_steps = args.train_steps or (2 if args.quick else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    crystals = crystals_from_json(args.crystals) if args.crystals else mp20_like_crystals(args.n_crystals, args.seed)
    ctx = BenchContext(sizes=sizes, device=resolve_device(args.device), batch=batch, sample_batch=sample_batch,
                       steps=steps, train_steps=train_steps, seed=args.seed, quick=args.quick,
                       crystals=crystals, sigma_norm_samples=200 if args.quick else 2000,
                       type_target=args.type_target)
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    print(f"dosmatgen bench on {ctx.device} ({torch.get_num_threads()} threads); sizes {sizes}; "
          f"training batch {batch}, sampling batch {sample_batch}", flush=True)
    report = run_benchmarks(only, ctx, report=lambda line: print(line, flush=True))
    env = report["environment"]
    print(f"environment: nproc {env.get('nproc')}, load average before {env.get('loadavg_1_5_15')}, "
          f"after {env.get('loadavg_after')}, cpu {env.get('cpu')}" + (f", gpu {env['gpu']}" if "gpu" in env else ""))
    if args.json:
        atomic_save_json(args.json, report)
        print(f"results -> {args.json}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="speed and memory benchmarks",
                              description="Training throughput, seconds per sampling step with and without "
                                          "classifier-free guidance, and peak memory, per model size.",
                              epilog="\n\n".join((__doc__ or "").split("\n\n")[1:]),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=None, help="comma-separated model sizes: tiny, compact, paper "
                                                 "(default compact,paper; tiny with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny size, batch 32, 2 steps")
    p.add_argument("--batch", type=positive_int, default=None, help="training batch (default 256)")
    p.add_argument("--sample-batch", type=positive_int, default=None, help="sampling batch (default 256)")
    p.add_argument("--steps", type=positive_int, default=None, help="timed sampling steps (default 3)")
    p.add_argument("--train-steps", type=positive_int, default=None, help="timed training steps (default 3)")
    p.add_argument("--only", default=None, help="comma-separated benchmark names (default: all)")
    p.add_argument("--crystals", default=None,
                   help='JSON {"structures": [{abc, angles, species, frac}]} to use instead of random '
                        "MP-20-like crystals")
    p.add_argument("--n-crystals", type=positive_int, default=512, help="size of the random crystal pool")
    p.add_argument("--type-target", choices=TYPE_TARGETS, default="eps",
                   help="the diffusion model's type head (default eps, the paper's; see `dosmatgen train --help`)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--json", default=None, help="also write the results as JSON")
    declare_paths(p, inputs=("crystals",), outputs={"json": "file"})
    p.set_defaults(func=_cmd_bench)
