"""The polymer task end to end (SPEC §3C): simulate -> render -> train -> evaluate.

1. simulates a training ensemble (``in-dst``, each replica from its own equilibrated coil)
   and the three test sets ``slow`` / ``medium`` / ``fast`` (every replica of a set
   starts from one conformation: the smallest, median and largest x-span of a fixed pool);
2. checks Δt stability over the whole ensemble (every bond of every frame below the FENE
   limit, every coordinate finite) and reports the blow-ups;
3. renders every dataset to pixel sets with ONE render configuration (the training set's);
4. trains ours and the baselines that read pixel sets (AE-InvE, AE-InvE-CD, InvE; AE-Aug is
   N/A: it needs one fixed particle labelling, and a frame's pixel set has none);
5. evaluates each model on each test set (ensemble mean and std of the extension over
   time), against the no-closure reference of the training ensemble's mean curve;
6. writes ``results.json``, ``table.md``, ``polymer_extension.png`` (three panels: slow,
   medium, fast) and ``polymer_unravelling.png`` (extension / contour length vs Hencky
   strain, model vs simulation).

Everything is cached under ``--out``; a rerun resumes.

Example:
    $ python benchmarks/polymer_pipeline.py --scale small --out runs/polymer_small
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

METHODS = ("ours", "ae-inve", "ae-inve-cd", "inve")
LABELS = {"ae-aug": "AE-Aug", "ae-inve": "AE-InvE", "ae-inve-cd": "AE-InvE-CD", "inve": "InvE", "ours": "ours"}
TEST_SETS = ("slow", "medium", "fast")

#: the chain, time step and integrator of each scale (systems.polymer.SMALL_CHAIN documents small)
SCALES = {
    "small": {
        "train": 32, "test": 12, "workers": 2,
        "sim": dict(n_particles=20, repulsion="soft", dt=0.002, weissenberg=5.0, strain=6.0, n_frames=101,
                    equilibration_steps=20_000),
        "render": dict(n_pixels=256),
        "train_cfg": dict(epochs_stage1=8, epochs_stage2=200, frame_stride=4, samples=256, flow_transforms=4,
                          flow_hidden=(64, 64), batch_size=16, threads=1),
        "eval_samples": 16,
    },
    # seconds: checks the script; numbers meaningless
    "smoke": {
        "train": 4, "test": 2, "workers": 1,
        "sim": dict(n_particles=8, repulsion="soft", dt=0.002, weissenberg=2.0, relaxation_time=1.0, strain=2.0,
                    n_frames=6, equilibration_steps=200),
        "render": dict(n_pixels=48),
        "train_cfg": dict(epochs_stage1=1, epochs_stage2=2, samples=32, flow_transforms=1, flow_hidden=(8, 8),
                          dynamics_hidden=(8, 8), batch_size=8, threads=1, val_fraction=0.0),
        "eval_samples": 2,
    },
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def stability(directory: Path, r0: float) -> dict:
    """Blow-ups of a polymer ensemble: replicas with a non-finite coordinate or a bond >= r0."""
    import numpy as np

    from openmm_closure.data import load

    ds = load(directory)
    bad, longest = [], 0.0
    for i in range(len(ds)):
        p = np.asarray(ds.positions[i], dtype=np.float64)
        b = np.linalg.norm(np.diff(p, axis=1), axis=-1) if np.isfinite(p).all() else np.array([np.inf])
        longest = max(longest, float(b.max()))
        if not np.isfinite(b).all() or b.max() >= r0:
            bad.append(i)
    return {"replicas": len(ds), "blowups": len(bad), "bad_replicas": bad, "longest_bond_nm": longest}


def simulate(scale: dict, out: Path, progress: bool) -> dict:
    from openmm_closure.md.simulate import simulate_ensemble

    dirs, timing = {}, {}
    for split, regime, reps, seed in [("train", "in-dst", scale["train"], 0)] + \
            [(r, r, scale["test"], 1000 + i) for i, r in enumerate(TEST_SETS)]:
        t = time.time()
        dirs[split] = simulate_ensemble("polymer", out / "data" / split, reps, regime=regime, seed=seed,
                                        platform="CPU", workers=scale["workers"], progress=progress,
                                        **scale["sim"])
        timing[split] = time.time() - t
        log(f"simulated {split}: {reps} replicas ({timing[split]:.0f} s)")
    return {"dirs": dirs, "seconds": timing}


def render(dirs: dict, scale: dict) -> dict:
    from openmm_closure.data import load, read_manifest
    from openmm_closure.video.pixel_dataset import default_render_config, pixel_dir_for, render_dataset
    from openmm_closure.video.frames import RenderConfig

    cfg = default_render_config(read_manifest(dirs["train"]), **scale["render"])
    pix = {}
    for split, d in dirs.items():
        target = pixel_dir_for(d)
        done = (target / "manifest.json").exists() and \
            RenderConfig.from_dict(load(target).manifest["render"]) == cfg
        pix[split] = target if done else render_dataset(d, target, cfg)
    return {"dirs": pix, "config": cfg.to_dict()}


def train_models(pix: dict, scale: dict, out: Path, methods, seeds, progress: bool) -> dict:
    from openmm_closure.learn.training import CHECKPOINT, TrainConfig, train

    models = {}
    for seed in seeds:
        for method in methods:
            mdir = out / "models" / (method if seed == 0 else f"{method}-seed{seed}")
            if not (mdir / "model.pt").exists():
                t = time.time()
                cfg = TrainConfig(data=str(pix["train"]), out=str(mdir), method=method, seed=seed, device="cpu",
                                  resume=(mdir / CHECKPOINT).exists(), progress=None if progress else False,
                                  **scale["train_cfg"])
                try:
                    train(cfg)
                    log(f"trained {method} seed {seed} ({time.time() - t:.0f} s)")
                except Exception as exc:  # one failed method must not sink the table
                    models[(method, seed)] = RuntimeError(f"{type(exc).__name__}: {exc}")
                    log(f"FAILED {method} seed {seed}: {exc}")
                    continue
            models[(method, seed)] = mdir
    return models


def mean_curve_reference(dirs: dict) -> dict:
    """No-closure reference: the training ensemble's mean extension curve as the prediction."""
    import numpy as np

    from openmm_closure.data import load
    from openmm_closure.evaluate.metrics import moment_errors

    train = np.asarray(load(dirs["train"]).observables["extension"])
    out = {}
    for split in TEST_SETS:
        true = np.asarray(load(dirs[split]).observables["extension"])
        out[split] = moment_errors(train, true)
    return out


def evaluate_models(models: dict, pix: dict, scale: dict, out: Path) -> list:
    from openmm_closure.evaluate.evaluation import evaluate

    rows = []
    for (method, seed), mdir in models.items():
        for split in TEST_SETS:
            if isinstance(mdir, Exception):
                rows.append({"method": method, "seed": seed, "regime": split, "status": "failed",
                             "reason": str(mdir), "value": None})
                continue
            rep = out / "reports" / mdir.name / split
            res = evaluate(mdir, pix[split], rep, samples=scale["eval_samples"], seed=0, permutations=4,
                           overwrite=True)
            res["seed"] = seed
            rows.append(res)
    return rows


def plots(rows: list, dirs: dict, reference: dict, out: Path, contour: float, strain_rate: float) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from openmm_closure.data import load

    ours = {r["regime"]: r for r in rows if r.get("method") == "ours" and r.get("seed") == 0 and r.get("status") == "ok"}
    train_mean = np.asarray(load(dirs["train"]).observables["extension"]).mean(0)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
    for ax, split in zip(axes, TEST_SETS):
        ds = load(dirs[split])
        t = np.asarray(ds.times) - ds.times[0]
        e = np.asarray(ds.observables["extension"])
        ax.plot(t, e.mean(0), "k", label="simulated mean ± std")
        ax.fill_between(t, e.mean(0) - e.std(0), e.mean(0) + e.std(0), color="k", alpha=0.15, lw=0)
        if split in ours:
            pm, ps = np.asarray(ours[split]["extra"]["pred_mean"]), np.asarray(ours[split]["extra"]["pred_std"])
            ax.plot(t, pm, "C1", label="ours (pixel sets) mean ± std")
            ax.fill_between(t, pm - ps, pm + ps, color="C1", alpha=0.25, lw=0)
        ax.plot(t, train_mean, "C0--", lw=1, label="training mean curve")
        ax.set_title(f"{split}: |Δmean| ours {ours.get(split, {}).get('value', float('nan')):.2f} nm, "
                     f"mean curve {reference[split]['mean_abs_error_mean']:.2f} nm", fontsize=9)
        ax.set_xlabel("time (ps)")
    axes[0].set_ylabel("extension (nm)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    p1 = out / "polymer_extension.png"
    fig.savefig(p1, dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for k, split in enumerate(TEST_SETS):
        ds = load(dirs[split])
        strain = (np.asarray(ds.times) - ds.times[0]) * strain_rate
        e = np.asarray(ds.observables["extension"]) / contour
        ax.plot(strain, e.mean(0), color=f"C{k}", label=f"{split}: simulated")
        ax.fill_between(strain, e.mean(0) - e.std(0), e.mean(0) + e.std(0), color=f"C{k}", alpha=0.15, lw=0)
        if split in ours:
            ax.plot(strain, np.asarray(ours[split]["extra"]["pred_mean"]) / contour, color=f"C{k}", ls="--",
                    label=f"{split}: ours")
    ax.set_xlabel("Hencky strain ε̇ t")
    ax.set_ylabel("extension / contour length")
    ax.set_title("unravelling in planar extensional flow")
    ax.legend(fontsize=7)
    fig.tight_layout()
    p2 = out / "polymer_unravelling.png"
    fig.savefig(p2, dpi=100)
    plt.close(fig)
    return {"extension": str(p1), "unravelling": str(p2)}


def table(rows: list, reference: dict, methods) -> str:
    import numpy as np

    head = "| polymer ext. mean abs. error (nm), test set | AE-Aug | " + " | ".join(LABELS[m] for m in methods) + \
        " | training mean curve |"
    lines = [head, "|---" * (len(methods) + 3) + "|"]
    for split in TEST_SETS:
        cells = ["N/A"]
        for m in methods:
            vals = [r["value"] for r in rows if r["method"] == m and r["regime"] == split and r.get("status") == "ok"]
            sds = [r["extra"]["mean_abs_error_std"] for r in rows
                   if r["method"] == m and r["regime"] == split and r.get("status") == "ok"]
            cells.append("failed" if not vals else
                         f"{np.mean(vals):.2f}" + (f" ± {np.std(vals):.2f}" if len(vals) > 1 else "")
                         + f" (std {np.mean(sds):.2f})")
        ref = reference[split]
        cells.append(f"{ref['mean_abs_error_mean']:.2f} (std {ref['mean_abs_error_std']:.2f})")
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_pipeline(scale_name: str, out: Path, methods=METHODS, seeds=(0,), progress: bool = False) -> dict:
    """Run (or resume) the whole polymer pipeline; returns the results dict (also in results.json)."""
    from openmm_closure.data import read_manifest

    scale = SCALES[scale_name]
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    sim = simulate(scale, out, progress)
    dirs = sim["dirs"]
    params = read_manifest(dirs["train"])["params"]
    stab = {k: stability(d, params["r0_fene"]) for k, d in dirs.items()}
    t1 = time.time()
    rend = render(dirs, scale)
    t2 = time.time()
    models = train_models(rend["dirs"], scale, out, methods, seeds, progress)
    t3 = time.time()
    rows = evaluate_models(models, rend["dirs"], scale, out)
    reference = mean_curve_reference(dirs)
    t4 = time.time()
    contour = (params["n_particles"] - 1) * 0.97
    figs = plots(rows, dirs, reference, out, contour, params["strain_rate"])
    text = table(rows, reference, methods)
    timing = {"simulate_s": t1 - t0, "render_s": t2 - t1, "train_s": t3 - t2, "evaluate_s": t4 - t3,
              "total_s": time.time() - t0}
    slim = [{k: v for k, v in r.items() if k not in ("over_time",)} for r in rows]
    res = {"scale": scale_name, "sizes": {k: v for k, v in scale.items() if k != "train_cfg"},
           "train_cfg": {k: list(v) if isinstance(v, tuple) else v for k, v in scale["train_cfg"].items()},
           "chain": {k: params[k] for k in ("n_particles", "repulsion", "dt", "weissenberg", "relaxation_time",
                                            "relaxation_time_source", "strain_rate", "strain", "steps", "n_frames")
                     if k in params},
           "stability": stab, "render": rend["config"], "timing": timing, "rows": slim,
           "mean_curve_reference": reference, "plots": figs, "table": text}
    (out / "results.json").write_text(json.dumps(res, indent=2, sort_keys=True, default=str) + "\n")
    (out / "table.md").write_text(text)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="small")
    p.add_argument("--out", default=None, help="output/cache directory (default runs/polymer/SCALE)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    out = Path(args.out or f"runs/polymer/{args.scale}")
    res = run_pipeline(args.scale, out, [m for m in args.methods.split(",") if m], list(range(args.seeds)),
                       progress=not args.no_progress)
    c = res["chain"]
    print(f"chain: {c}")
    print("stability: " + ", ".join(f"{k} {v['blowups']}/{v['replicas']} blow-ups" for k, v in res["stability"].items()))
    print(f"render: {res['render']['height']} x {res['render']['width']} px, K = {res['render']['n_pixels']}")
    print(res["table"])
    print("wall time: " + ", ".join(f"{k} {v:.0f}" for k, v in res["timing"].items()))
    print(f"plots: {res['plots']['extension']}, {res['plots']['unravelling']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
