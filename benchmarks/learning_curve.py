"""Learning curves: the energy MRE against the number of training trajectories.

On particles2d in-dst (the settings of ``paper_table.py --scale small``: N = 300, 300
steps, the same networks and stage-2 budget) this script trains, for each training-set
size in ``--sizes`` and each seed, the methods in ``--methods`` (default: ours, the
no-closure calibration model and the two strongest baselines of the small table,
AE-InvE-CD and AE-InvE) and scores them on the same 32-trajectory in-dst test set, next
to the training mean curve of that size (the model-free row).

The training sets are nested: the largest is simulated once (replica ``i`` seeded from
``(0, i)``) and the smaller ones are its first ``n`` replicas
(:func:`openmm_closure.data.subset_dataset`), so the 32-trajectory set is exactly the
small table's training set and its models are shared with ``paper_table.py``.

Budget (``--budget``):

- ``fixed`` (default): the same number of stage-1 frame visits at every size, that of
  the small table (32 trajectories x 31 frames x 12 epochs): with ``n`` trajectories each
  epoch draws ``round(31 * 32 / n)`` frames per trajectory (``--frames-per-trajectory``).
  The curve then says what more *diverse* data buys at a fixed training cost, and every
  model costs about the same (~5 min on one core).
- ``per-frame``: every frame of every trajectory each epoch (the cost grows with ``n``:
  ~30 min a model at 320 trajectories on one core).

Stage 2 sees all its pairs at every size (it is cheap: seconds to a minute).

Everything is cached under ``--out`` (data, models, reports): a rerun resumes, and
several processes with disjoint ``--methods`` can share the work on several cores. The
table is printed, and ``learning_curve.json`` and ``learning_curve.png`` (MRE against
size, mean ± std over seeds, log-log) are written into ``--out``.

Example:
    $ python benchmarks/learning_curve.py --out runs/paper_table --sizes 32,100,320 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

DEFAULT_METHODS = ("ours", "no-closure", "ae-inve-cd", "ae-inve")
LABELS = {"ours": "ours", "no-closure": "no closure", "ae-inve-cd": "AE-InvE-CD", "ae-inve": "AE-InvE",
          "ae-aug": "AE-Aug", "inve": "InvE", "mean-curve": "training mean curve (no model)"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def frames_per_trajectory(budget: str, n: int, n_ref: int, strided_frames: int) -> int | None:
    """Frames drawn per trajectory and epoch so that every size gets the reference budget.

    Arguments:
        budget: ``"fixed"`` (same frame visits as ``n_ref`` trajectories with all frames)
            or ``"per-frame"`` (all frames: None).
        n: training trajectories; n_ref: the reference (smallest) size;
        strided_frames: frames per trajectory after ``frame_stride``.

    Returns:
        None (all frames) or the number of frames per trajectory (>= 1).

    Example:
        >>> frames_per_trajectory("fixed", 320, 32, 31), frames_per_trajectory("fixed", 32, 32, 31)
        (3, None)
    """
    if budget == "per-frame" or n <= n_ref:
        return None
    return max(1, int(round(strided_frames * n_ref / n)))


def _model_dir(out: Path, n: int, n_ref: int, method: str, seed: int, budget: str) -> Path:
    from paper_table import _tag

    if n == n_ref:  # the small table's own runs
        return out / "models" / "particles2d" / _tag(method, seed)
    return out / "learning_curve" / f"{budget}-n{n}" / "models" / _tag(method, seed)


def _report(model: Path, test: Path, rdir: Path) -> dict:
    """metrics.json of ``model`` on ``test``: cached when newer than the model."""
    from openmm_closure.evaluate.evaluation import evaluate

    cached = rdir / "metrics.json"
    if cached.exists() and cached.stat().st_mtime > (model / "model.pt").stat().st_mtime:
        old = json.loads(cached.read_text())
        if old.get("model") == str(model):
            return old
    return evaluate(model, test, rdir, samples=1, seed=0, permutations=0, plots=False, overwrite=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/paper_table")
    p.add_argument("--sizes", default="32,100,320", help="comma-separated training-set sizes (ascending)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0,
                   help="train seeds first-seed .. seeds-1 only (another process may do the others); the table "
                        "shows every cached seed")
    p.add_argument("--budget", choices=("fixed", "per-frame"), default="fixed")
    p.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    p.add_argument("--workers", type=int, default=1, help="simulate worker processes")
    p.add_argument("--report-only", action="store_true", help="train nothing: tabulate what is cached")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from paper_table import SCALES

    from openmm_closure.data import subset_dataset
    from openmm_closure.md.simulate import simulate_ensemble
    from openmm_closure.learn.training import CHECKPOINT, TrainConfig, train

    torch.set_num_threads(args.threads)
    sizes = sorted(int(x) for x in args.sizes.split(",") if x)
    methods = [m for m in args.methods.split(",") if m]
    if not sizes or sizes[0] < 2:
        raise SystemExit("--sizes: at least one size >= 2")
    s = SCALES["small"]["particles2d"]
    out = Path(args.out)
    data = out / "data" / "particles2d"
    sim = dict(regime="in-dst", n_particles=s["n"]["in-dst"], platform="CPU", workers=args.workers,
               progress=False, **s["sim"])
    t0 = time.time()
    test = simulate_ensemble("particles2d", data / "test-in-dst", s["test"], seed=1000, **sim)
    n_max = sizes[-1]
    full = data / "train" if n_max == s["train"] else data / f"train-{n_max}"
    full = simulate_ensemble("particles2d", full, n_max, seed=0, **sim)
    log(f"data ready ({time.time() - t0:.0f} s)")
    sets = {n: (full if n == n_max else subset_dataset(full, data / ("train" if n == s["train"] else f"train-{n}"), n))
            for n in sizes}
    import openmm_closure.data as ocdata

    strided = math.ceil(ocdata.load(full).n_frames / s["train_cfg"]["frame_stride"])
    n_ref = sizes[0]

    results: dict = {}
    for seed in range(args.seeds):
        for n in sizes:
            tabulate_only = args.report_only or seed < args.first_seed
            k = frames_per_trajectory(args.budget, n, n_ref, strided)
            for method in methods:
                mdir = _model_dir(out, n, n_ref, method, seed, args.budget)
                if not (mdir / "model.pt").exists():
                    if tabulate_only:
                        continue
                    t = time.time()
                    train(TrainConfig(data=str(sets[n]), out=str(mdir), method=method, seed=seed, device="cpu",
                                      resume=(mdir / CHECKPOINT).exists(), progress=False,
                                      frames_per_trajectory=k, **s["train_cfg"]))
                    log(f"trained n={n} {method} seed {seed} ({time.time() - t:.0f} s)")
                res = _report(mdir, test, mdir.parent.parent / "reports" / mdir.name if n != n_ref
                              else out / "reports" / "particles2d" / mdir.name / "in-dst")
                results.setdefault((n, method), []).append(res["value"])
                mc = res.get("calibration", {}).get("mean-curve-unshifted", {}).get("value")
                if mc is not None and seed == 0 and method == methods[0]:
                    results.setdefault((n, "mean-curve"), []).append(mc)
                log(f"n={n} {method} seed {seed}: MRE {res['value']:.3e}")

    rows = sorted({m for _, m in results}, key=lambda m: (list(LABELS).index(m) if m in LABELS else 99))
    print(f"particles2d in-dst energy MRE against training trajectories ({args.budget} budget; "
          f"test set {s['test']} trajectories; mean ± std over seeds; n = seeds done)\n")
    print("| method | " + " | ".join(f"{n} trajectories" for n in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    summary: dict = {}
    for m in rows:
        cells = []
        for n in sizes:
            v = np.asarray(results.get((n, m), []), dtype=np.float64)
            if len(v) == 0:
                cells.append("—")
                continue
            summary.setdefault(m, {})[n] = {"values": v.tolist(), "mean": float(v.mean()), "std": float(v.std())}
            cells.append(f"{v.mean():.2e}" + (f" ± {v.std():.1e} (n={len(v)})" if len(v) > 1 else " (n=1)"))
        print(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + " |")
    if "ours" in summary and "no-closure" in summary:
        print("\nours vs no closure, per size (gap in units of the larger seed std):")
        for n in sizes:
            a, b = summary["ours"].get(n), summary["no-closure"].get(n)
            if a and b:
                line = f"- {n}: no-closure / ours = {b['mean'] / a['mean']:.2f}"
                if min(len(a["values"]), len(b["values"])) > 1:
                    sd = max(a["std"], b["std"], 1e-30)
                    line += f", gap = {(b['mean'] - a['mean']) / sd:+.1f} seed std"
                print(line)
    (out / "learning_curve.json").write_text(json.dumps({"budget": args.budget, "sizes": sizes, "test": s["test"],
                                                         "results": summary}, indent=2) + "\n")
    _plot(summary, sizes, out / "learning_curve.png", args.budget)
    print(f"\nwrote {out / 'learning_curve.json'} and {out / 'learning_curve.png'}; wall time {time.time() - t0:.0f} s")
    return 0


def _plot(summary: dict, sizes, path: Path, budget: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for m, by_n in summary.items():
        ns = [n for n in sizes if n in by_n]
        ax.errorbar(ns, [by_n[n]["mean"] for n in ns], yerr=[by_n[n]["std"] for n in ns], marker="o",
                    capsize=3, ls="--" if m == "mean-curve" else "-", label=LABELS.get(m, m))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training trajectories")
    ax.set_ylabel("energy MRE (in-dst test set)")
    ax.set_title(f"particles2d, {budget} stage-1 budget")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
