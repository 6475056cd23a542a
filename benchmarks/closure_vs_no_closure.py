"""Does the closure earn its place? ours vs the same stage 2 without closure, side by side.

On particles2d in-dst at the small scale of ``paper_table.py`` (32 training / 32 test
trajectories, the same training settings), this script trains, for each seed,

- ``ours``: the method with the default encoder (centred sets: translation invariant);
- ``ours, uncentred``: the same with ``center=False`` (the encoder sees absolute positions);
- ``no-closure``: the same stage 2 (dynamics, budget, best-validation selection) on the
  energy alone (``--method no-closure``);

and evaluates them on the in-dst test set with the MRE on the whole training set's range,
next to the model-free rows (training mean curve shifted to the first value; the mean
curve unshifted; constant first value) and the ẑ diagnostic of each closure model (what ẑ explains).

Datasets and models are cached under ``--out`` in the layout of ``paper_table.py`` (so
both scripts share the ``ours`` and ``no-closure`` runs): a rerun resumes.

Example:
    $ python benchmarks/closure_vs_no_closure.py --out runs/paper_table --seeds 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

VARIANTS = {
    "ours": {"method": "ours"},
    "ours-uncentred": {"method": "ours", "center": False},
    "no-closure": {"method": "no-closure"},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/paper_table")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from paper_table import SCALES, _tag

    from openmm_closure.evaluate.evaluation import evaluate
    from openmm_closure.md.simulate import simulate_ensemble
    from openmm_closure.learn.training import TrainConfig, train

    torch.set_num_threads(args.threads)
    s = SCALES["small"]["particles2d"]
    out = Path(args.out)
    data = {}
    for split, seed in (("train", 0), ("test-in-dst", 1000)):
        data[split] = simulate_ensemble("particles2d", out / "data" / "particles2d" / split, s["train" if split == "train" else "test"],
                                        regime="in-dst", n_particles=s["n"]["in-dst"], seed=seed, platform="CPU",
                                        workers=1, progress=False, **s["sim"])
    variants = [v for v in args.variants.split(",") if v]
    rows: dict[str, list] = {}
    calib: dict[str, float] = {}
    diag: dict[str, list] = {}
    t0 = time.time()
    for seed in range(args.seeds):
        for v in variants:
            opts = dict(VARIANTS[v])
            method = opts.pop("method")
            tag = _tag(method if v in ("ours", "no-closure") else v, seed)
            mdir = out / "models" / "particles2d" / tag
            if not (mdir / "model.pt").exists():
                t = time.time()
                train(TrainConfig(data=str(data["train"]), out=str(mdir), method=method, seed=seed, device="cpu",
                                  resume=(mdir / "checkpoint.pt").exists(), progress=False,
                                  **s["train_cfg"], **opts))
                log(f"trained {tag} ({time.time() - t:.0f} s)")
            res = evaluate(mdir, data["test-in-dst"], out / "reports" / "particles2d" / tag / "in-dst",
                           permutations=0, plots=False, overwrite=True)
            rows.setdefault(v, []).append(res["value"])
            for name, c in res["calibration"].items():
                calib[name] = c["value"]
            if res.get("closure_diagnostic"):
                d = res["closure_diagnostic"]
                diag.setdefault(v, []).append(d)
            log(f"{v} seed {seed}: MRE {res['value']:.3e}")
    print(f"particles2d in-dst, {s['train']} training / {s['test']} test trajectories, {args.seeds} seed(s); "
          "energy MRE on the whole training set's range\n")
    print("| variant | MRE per seed | mean ± std |")
    print("|---|---|---|")
    for v, vals in rows.items():
        a = np.asarray(vals, dtype=np.float64)
        print(f"| {v} | " + " / ".join(f"{x:.2e}" for x in a) + f" | {a.mean():.2e} ± {a.std():.1e} |")
    for name in ("mean-curve", "mean-curve-unshifted", "constant"):
        if calib.get(name) is not None:
            print(f"| {name} (no model) | {calib[name]:.2e} | {calib[name]:.2e} |")
    if "ours" in rows and "no-closure" in rows:
        a, b = np.asarray(rows["ours"]), np.asarray(rows["no-closure"])
        gap = b.mean() - a.mean()
        print(f"\nno-closure - ours = {gap:.2e}; one seed std: ours {a.std():.1e}, no-closure {b.std():.1e}; "
              f"ratio no-closure / ours = {b.mean() / a.mean():.2f}; "
              f"{'beyond' if gap > max(a.std(), b.std()) else 'NOT beyond'} one seed std")
    print("\nWhat ẑ explains (test set; mean over seeds):")
    for v, ds in diag.items():
        w = np.mean([np.mean(d["within_fraction"]) for d in ds])
        print(f"- {v}: within-trajectory variance fraction {w:.2f}; readings: " + " | ".join(d["reading"] for d in ds))
    print(f"\nwall time {time.time() - t0:.0f} s (cached runs take ~0 s)")
    (out / "closure_vs_no_closure.json").write_text(json.dumps({"mre": rows, "calibration": calib,
                                                                "diagnostic": diag}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
