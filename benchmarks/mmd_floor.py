"""The finite-ensemble floor of the mixing MMD, against the test-ensemble size.

The reported MMD (the biased V-statistic, SPEC §3B) of two finite ensembles of one and the
same distribution is not zero: its expectation is ``(1/n + 1/m)(1 - k̄)`` per bandwidth
(:func:`openmm_closure.evaluate.metrics.mmd_floor`). A perfect model, rolled out ``samples`` times
from each of ``m`` test trajectories, scores at least the floor with ``n = samples * m``;
differences between methods below a few times the floor are not resolved.

This script reads the lj-mixing in-dst ensembles simulated by ``paper_table.py`` under
``--out`` (the training set, the in-dst test set and, where present, the extra pool
``data/lj-mixing/pool-in-dst``), estimates ``k̄`` from all of them together, and prints

1. the floor against the test-set size (a perfect model with ``--samples`` rollouts per
   test trajectory, and two independent simulated ensembles of the same size);
2. a check of the formula: the measured MMD between random disjoint sub-ensembles of the
   pool, mean ± std over draws, beside the formula;
3. the test-set size at which the floor falls below a fifth of a difference to resolve
   (``--resolve``; by default 1e-2 ... 3e-4 and the gaps between ours and no closure that
   ``OUT/results.json`` reports, where it exists).

Example:
    $ python benchmarks/mmd_floor.py --out runs/paper_table
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SIZES = (16, 32, 48, 100, 200, 300, 500, 1000, 2000)


def _ensembles(out: Path):
    import numpy as np

    from openmm_closure.data import load

    parts, names = [], []
    for split in ("train", "test-in-dst", "pool-in-dst"):
        d = out / "data" / "lj-mixing" / split
        if (d / "manifest.json").exists():
            try:
                ds = load(d)
            except ValueError as exc:  # e.g. an unfinished pool: use what is complete
                print(f"skipped {d}: {exc}", file=sys.stderr)
                continue
            obs = list(ds.manifest.get("observables", []))
            parts.append(np.stack([ds.observables[k] for k in obs], -1))
            names.append(f"{split} ({len(ds)})")
    if not parts:
        raise SystemExit(f"no lj-mixing in-dst data under {out}/data/lj-mixing: run paper_table.py first")
    return parts, names


def _ours_gaps(out: Path) -> dict:
    """|ours - no closure| per lj-mixing regime of OUT/results.json (paper_table.py), if present."""
    p = out / "results.json"
    if not p.exists():
        return {}
    summary = json.loads(p.read_text()).get("summary", {})
    gaps = {}
    for regime in ("in-dst", "diff-init", "diff-N"):
        a, b = summary.get(f"lj-mixing/ours/{regime}", {}), summary.get(f"lj-mixing/no-closure/{regime}", {})
        if a.get("mean") is not None and b.get("mean") is not None:
            gaps[regime] = abs(a["mean"] - b["mean"])
    return gaps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/paper_table")
    p.add_argument("--samples", type=int, default=4, help="rollouts per test trajectory (paper_table: 4)")
    p.add_argument("--draws", type=int, default=200, help="random splits per size in the check")
    p.add_argument("--resolve", type=float, default=None,
                   help="one difference the table must resolve (default: a ladder 1e-2 ... 3e-4)")
    args = p.parse_args(argv)

    import numpy as np

    from openmm_closure.evaluate import metrics

    parts, names = _ensembles(Path(args.out))
    pool = np.concatenate(parts, 0)
    r = len(pool)
    unit = metrics.mmd_floor(pool, 1, 1) / 2.0   # mean of (1 - k̄) over bandwidths and time
    print(f"lj-mixing in-dst pool: {' + '.join(names)} = {r} trajectories, {pool.shape[1]} frames, "
          f"observables (R_AB, R_BA); mean (1 - k̄) = {unit:.4f}\n")
    print(f"| test trajectories m | perfect model, {args.samples} rollouts each (lower bound) | two simulated ensembles of m |")
    print("|---|---|---|")
    for m in SIZES:
        print(f"| {m} | {metrics.mmd_floor(pool, args.samples * m, m):.2e} | {metrics.mmd_floor(pool, m, m):.2e} |")

    rng = np.random.default_rng(0)
    print("\nCheck: measured MMD between random disjoint sub-ensembles of the pool vs the formula")
    print("| sizes | measured mean ± std | formula |")
    print("|---|---|---|")
    check = {}
    for a, b in ((8, 8), (16, 16), (r // 4, r // 4), (r // 2, r - r // 2)):
        if a < 2 or b < 2 or a + b > r:
            continue
        vals = []
        for _ in range(args.draws):
            idx = rng.permutation(r)
            vals.append(metrics.mmd(pool[idx[:a]], pool[idx[a:a + b]]))
        f = metrics.mmd_floor(pool, a, b)
        check[f"{a}x{b}"] = {"measured": float(np.mean(vals)), "std": float(np.std(vals)), "formula": f}
        print(f"| {a} vs {b} | {np.mean(vals):.2e} ± {np.std(vals):.1e} | {f:.2e} |")
    print("(the pool's trajectories are not all independent of the estimate of k̄ they are drawn from, and "
          "sub-ensembles of one pool overlap across draws: agreement within ~10% is what to expect)")

    targets = [args.resolve] if args.resolve is not None else [1e-2, 3e-3, 1e-3, 3e-4]
    gaps = _ours_gaps(Path(args.out))
    targets += sorted(gaps.values(), reverse=True)
    need = {}
    print(f"\nTest-set size m at which a perfect model's floor ({args.samples} rollouts each) is a fifth of a difference:")
    print("| difference to resolve | m needed |")
    print("|---|---|")
    for g in targets:
        m = next((m for m in range(8, 200_001, 8) if metrics.mmd_floor(pool, args.samples * m, m) <= g / 5), None)
        need[f"{g:.2e}"] = m
        what = [k for k, v in gaps.items() if v == g]
        label = f"{g:.1e}" + (f" (|ours - no closure|, {what[0]}, OUT/results.json)" if what else "")
        print(f"| {label} | {m if m is not None else '> 200000'} |")
    print(f"\nTwo simulated ensembles of the small table's sizes (32 vs 48) score {metrics.mmd_floor(pool, 32, 48):.2e} "
          "on average.")
    (Path(args.out) / "mmd_floor.json").write_text(json.dumps(
        {"pool": r, "unit": unit, "samples": args.samples,
         "floor": {str(m): metrics.mmd_floor(pool, args.samples * m, m) for m in SIZES},
         "two_ensembles": {str(m): metrics.mmd_floor(pool, m, m) for m in SIZES},
         "check": check, "test_size_needed": need}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
