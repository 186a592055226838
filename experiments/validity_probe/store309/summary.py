import json, os, sys, numpy as np
W = sys.argv[1] if len(sys.argv) > 1 else "results/validity_probe/store309"
for tag in ['demo_lr', 'demo', 'w10k', 'ls_lr', 'ls', 'w30k', 'f32', 's12_lr', 's12']:
    res = {}
    for s in range(3):
        f = f'{W}/probe_{tag}_s{s}.json'
        if not os.path.exists(f):
            continue
        d = json.load(open(f))
        for v, r in d['variants'].items():
            res.setdefault(v, []).append(r)
    for v, L in res.items():
        val = [100 * r['validity'] for r in L]
        big = [r['validity_by_atoms'].get('7+', [0, 0]) for r in L]
        print(f"{tag:7s} {v:4s} seeds={len(L)} validity {np.mean(val):.1f} ({' / '.join(f'{x:.1f}' for x in val)}) "
              f"7+ {sum(b[0] for b in big)}/{sum(b[1] for b in big)} elem {100*np.mean([r['element_accuracy'] for r in L]):.1f} "
              f"vol {np.median([r['volume_ratio_median'] for r in L]):.2f}")
