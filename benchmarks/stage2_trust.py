"""Stage-2 variants side by side: is the surrogate one can trust better than the old one?

For each system, seed and method (``ours`` and the ``no-closure`` baseline) this script
trains stage 1 once, then stage 2 under each variant from that same stage-1 checkpoint
(copied; ``train --resume`` accepts other stage-2 options before stage 2 begins), and
evaluates every model on the in-dst, diff-init and diff-N test sets of the paper table's
data (``benchmarks/paper_table.py``, the same scale and directory layout). It prints, per
variant: the metric (MMD² or MRE, mean ± std over seeds), the last-frame spread ratio and
the 50%/90% interval coverage (ensembles), rollouts out of the training range, divergent
rollouts (|z_scaled| > 10) and the stage-2 wall time, all measured in this one run.

Variants (``--variants``, comma separated; ``reference`` is stage 2 as it was before):

- ``reference``: σ0² = 0.01 fixed floor, no confinement, one-step selection;
- ``data``: the data-scaled diffusion and confinement, one-step selection;
- ``default``: ``data`` plus rollout-scored selection (the package's defaults);
- ``step5``: ``default`` with ``--stage2-step 5``;
- ``horizon4``: ``default`` with ``--stage2-horizon 4``;
- ``seeds3``: ``default`` with ``--stage2-seeds 3``.

Everything is cached under ``--out`` (a rerun resumes; ``--report-only`` prints from the
cache).

Example:
    $ python benchmarks/stage2_trust.py --scale small --systems lj-mixing --seeds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paper_table  # noqa: E402  (the same data, scales and layout)

REFERENCE = dict(sigma0_sq=0.01, confine=False, select="one-step")
VARIANTS = {
    "reference": REFERENCE,
    "data": dict(select="one-step"),
    "default": {},
    "step5": dict(stage2_step=5),
    "horizon4": dict(stage2_horizon=4),
    "seeds3": dict(stage2_seeds=3),
}
DIVERGED = 10.0  # |z_scaled| beyond this counts as a divergent rollout


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _stage1(base: dict, out: Path) -> Path:
    """The stage-1 checkpoint of one (system, method, seed), trained once."""
    from openmm_closure.learn.training import CHECKPOINT, TrainConfig, load_checkpoint, train

    d = out / "stage1"
    done = 0
    if (d / CHECKPOINT).exists():
        ck = load_checkpoint(d / CHECKPOINT)
        if ck["stage"] != 1:
            raise RuntimeError(f"{d} went past stage 1; delete it and rerun")
        done = ck["epoch"]
    if done < base["epochs_stage1"]:  # fresh, or resume a killed stage 1 up to its last epoch
        train(TrainConfig(**{**base, "out": str(d), "stop_after": base["epochs_stage1"] - done, **REFERENCE,
                             "resume": done > 0}))
    return d


def _variant(base: dict, stage1, out: Path, opts: dict) -> tuple[Path, float]:
    """Stage 2 under ``opts``: resumed from a copy of the stage-1 checkpoint, or trained
    afresh when there is none (no-closure has no stage 1)."""
    from openmm_closure.learn.training import TrainConfig, train

    if (out / "model.pt").exists() and (out / "wall.json").exists():
        return out, json.loads((out / "wall.json").read_text())["stage2_s"]
    if out.exists():
        shutil.rmtree(out)
    if stage1 is not None:
        shutil.copytree(stage1, out)
    t = time.time()
    train(TrainConfig(**{**base, "out": str(out), "resume": stage1 is not None, **opts}))
    wall = time.time() - t
    (out / "wall.json").write_text(json.dumps({"stage2_s": wall}))
    return out, wall


def _evaluate(model: Path, data: Path, out: Path, samples: int) -> dict:
    from openmm_closure.evaluate.evaluation import evaluate

    if (out / "metrics.json").exists():
        return json.loads((out / "metrics.json").read_text())
    return evaluate(model, data, out, samples=samples, permutations=0, plots=False, diagnostic=False,
                    overwrite=True)


def _diverged(model_dir: Path, data: Path, samples: int) -> int:
    """Rollouts from the test set's first frames whose |z_scaled| exceeds DIVERGED."""
    import torch

    from openmm_closure import load_model
    from openmm_closure.data import load
    from openmm_closure.evaluate.evaluation import _states

    model, ds = load_model(model_dir), load(data)
    z0 = np.repeat(_states(model, ds, list(range(len(ds)))), samples if model.dynamics.stochastic else 1, 0)
    steps = int(round((ds.n_frames - 1) * float(ds.times[1] - ds.times[0]) / model.dt))
    traj = model.rollout(torch.as_tensor(z0), steps, seed=0)
    return int((~(traj.abs() <= DIVERGED)).any(-1).any(-1).sum())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", default="small", choices=sorted(paper_table.SCALES))
    p.add_argument("--out", default=None, help="cache directory (default runs/stage2_trust/SCALE)")
    p.add_argument("--data", default=None, help="the paper table's directory (default runs/paper_table/SCALE)")
    p.add_argument("--systems", default="lj-mixing,particles2d")
    p.add_argument("--methods", default="ours,no-closure")
    p.add_argument("--variants", default="reference,data,default,step5")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--regimes", default=",".join(paper_table.REGIMES),
                   help="test sets to evaluate on (their data must exist)")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    scale = paper_table.SCALES[args.scale]
    out = Path(args.out or f"runs/stage2_trust/{args.scale}")
    data = Path(args.data or f"runs/paper_table/{args.scale}") / "data"
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    rows = []
    for system in [s for s in args.systems.split(",") if s]:
        s = scale[system]
        k = s["eval_samples"]
        for method in [m for m in args.methods.split(",") if m]:
            for seed in range(args.seeds):
                base = dict(data=str(data / system / "train"), method=method, seed=seed, device="cpu",
                            progress=False, threads=1, **s["train_cfg"])
                root = out / system / f"{method}-seed{seed}"
                if args.report_only and not root.exists():
                    continue
                stage1 = None if args.report_only or method == "no-closure" else _stage1(base, root)
                for v in variants:
                    vdir = root / v
                    if args.report_only:
                        if not (vdir / "wall.json").exists():
                            continue
                        wall = json.loads((vdir / "wall.json").read_text())["stage2_s"]
                    else:
                        log(f"{system} {method} seed {seed}: stage 2 '{v}'")
                        vdir, wall = _variant(base, stage1, vdir, VARIANTS[v])
                    for regime in [r for r in args.regimes.split(",") if r]:
                        test = data / system / f"test-{regime}"
                        res = _evaluate(vdir, test, vdir / f"eval-{regime}", k)
                        div_file = vdir / f"eval-{regime}" / "diverged.json"
                        if not div_file.exists():
                            div_file.write_text(json.dumps({"count": _diverged(vdir, test, k)}))
                        extra = res.get("extra") or {}
                        cal = extra.get("calibration") or {}
                        rows.append({"system": system, "method": method, "seed": seed, "variant": v,
                                     "regime": regime, "value": res.get("value"), "metric": res.get("metric"),
                                     "spread": extra.get("spread_ratio"), "cov50": cal.get("coverage_50"),
                                     "cov90": cal.get("coverage_90"),
                                     "out": (res.get("out_of_range") or {}).get("rollouts"),
                                     "of": (res.get("out_of_range") or {}).get("of"),
                                     "diverged": json.loads(div_file.read_text())["count"], "stage2_s": wall})
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=1))
    print(report(rows))
    return 0


def _ms(values) -> str:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if not len(v):
        return "—"
    return f"{v.mean():.3g} ± {v.std():.2g}" if len(v) > 1 else f"{v.mean():.3g}"


def report(rows: list) -> str:
    """A markdown table: one line per (system, regime, method, variant), seeds pooled."""
    lines = ["| system | regime | method | variant | metric (mean ± std) | per seed | spread (last frame) | "
             "cover 50/90 | out of range | diverged | stage 2 s |", "|---" * 11 + "|"]
    keys = []
    for r in rows:
        key = (r["system"], r["regime"], r["method"], r["variant"])
        if key not in keys:
            keys.append(key)
    for key in keys:
        rs = [r for r in rows if (r["system"], r["regime"], r["method"], r["variant"]) == key]
        spread = [np.mean(r["spread"]) for r in rs if r["spread"] and None not in r["spread"]]
        cov = [(r["cov50"], r["cov90"]) for r in rs if r["cov50"] is not None]
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {_ms(r['value'] for r in rs)} | "
            + ", ".join("—" if r["value"] is None else f"{r['value']:.3g}" for r in rs) + " | "
            + (_ms(spread) if spread else "—") + " | "
            + (f"{np.mean([c[0] for c in cov]):.2f} / {np.mean([c[1] for c in cov]):.2f}" if cov else "—") + " | "
            + f"{sum(r['out'] or 0 for r in rs)} of {sum(r['of'] or 0 for r in rs)} | "
            + f"{sum(r['diverged'] for r in rs)} | {np.mean([r['stage2_s'] for r in rs]):.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
