"""``openmm-closure train``: train the encoder + flow decoder, then the dynamics."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ..learn.distributed import is_main_process
from ..models.dynamics import DRIFTS, DYNAMICS
from ..models.registry import ENCODERS
from ..learn.training import STAGE1_OBJECTIVES, TrainConfig, train, train_config_values
from ._config import add_config_arguments
from ._device import add_device_argument

__all__ = ["configure", "run", "config_from_args", "effective_config_text"]


def _ints(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` arguments to ``parser``."""
    d = TrainConfig(data="", out="")
    parser.epilog = ("Data-parallel on P processes (gloo on CPU, NCCL on CUDA): torchrun --nproc_per_node P "
                     "-m openmm_closure.cli train ...; the batch sizes stay global and rank 0 writes --out.")
    a = parser.add_argument
    a("--data", default=None, help="dataset directory (openmm-closure simulate); required, here or in --config")
    a("--out", default=None, help="model directory to write; required, here or in --config")
    a("--method", default=d.method, choices=STAGE1_OBJECTIVES.names(),
      help="stage-1 objective: ours (flow decoder on the density), a baseline, or no-closure (z̄ alone)")
    a("--latent-dim", type=int, default=None,
      help="closure dimension d (default: 1 per species for lj-mixing, else 2)")
    a("--epsilon", type=float, default=d.epsilon, help="decoder bandwidth ε, normalised units")
    a("--samples", type=int, default=d.samples, help="Monte Carlo samples M per set (and species)")
    a("--dynamics", choices=DYNAMICS.names(), default=None,
      help="dynamics (default: ode for particles2d, sde otherwise)")
    a("--drift", choices=DRIFTS.names(), default=d.drift,
      help="drift structure: an MLP, or OnsagerNet's -(M + W)∇V + f")
    a("--sigma0-sq", type=float, default=d.sigma0_sq,
      help="a fixed SDE diffusion floor σ0² in scaled units² per ps, σ = sqrt(σ0² + MLP²) (the reference "
           "code's form); unset: the diffusion is scaled by the training data's increment variance "
           "(see --diffusion-floor)")
    a("--diffusion-floor", type=float, default=d.diffusion_floor, metavar="F",
      help="SDE: σ_k² >= F times the data's increment variance per ps of component k")
    a("--confine", action=argparse.BooleanOptionalAction, default=d.confine,
      help="confine the dynamics outside the training range (the guard's box): a restoring flow that is zero "
           "inside it, so no rollout diverges")
    a("--restore-steps", type=float, default=d.restore_steps,
      help="relaxation time of that restoring flow, in dynamics steps")
    a("--encoder", choices=ENCODERS.names(), default=d.encoder,
      help="set encoder of ẑ (the baselines' encoders come with their --method)")
    a("--encoder-hidden", type=_ints, default=d.encoder_hidden,
      help="hidden widths of the DeepSet's per-particle network ψ, e.g. 64,64")
    a("--encoder-embed", type=int, default=d.encoder_embed, help="width of the DeepSet's pooled embedding")
    a("--center", action=argparse.BooleanOptionalAction, default=None,
      help="subtract each set's centroid before encoding (translation-invariant ẑ); "
           "default: on for particles2d and polymer, off for lj-mixing (walls)")
    a("--flow-transforms", type=int, default=d.flow_transforms,
      help="autoregressive spline transforms of the flow decoder")
    a("--flow-bins", type=int, default=d.flow_bins, help="spline bins per transform")
    a("--flow-hidden", type=_ints, default=d.flow_hidden, help="hidden widths of each flow transform, e.g. 128,128")
    a("--dynamics-hidden", type=_ints, default=d.dynamics_hidden,
      help="hidden widths of the drift (and diffusion) networks, e.g. 128,128")
    a("--epochs", type=int, default=None, help="set both --epochs-stage1 and --epochs-stage2")
    a("--epochs-stage1", type=int, default=d.epochs_stage1, help="epochs of stage 1 (encoder + decoder)")
    a("--epochs-stage2", type=int, default=d.epochs_stage2, help="epochs of stage 2 (the dynamics, encoder frozen)")
    a("--batch-size", type=int, default=d.batch_size,
      help="sets per stage-1 step, over all processes under torchrun (each takes its share: "
           "P processes take the same steps as one)")
    a("--batch-size-stage2", type=int, default=d.batch_size_stage2,
      help="frame pairs per stage-2 step, over all processes under torchrun")
    a("--lr", type=float, default=d.lr, help="stage-1 learning rate (cosine decay)")
    a("--lr-stage2", type=float, default=d.lr_stage2, help="stage-2 learning rate (cosine decay)")
    a("--frame-stride", type=int, default=d.frame_stride, help="use every k-th frame in stage 1")
    a("--frames-per-trajectory", type=int, default=None, metavar="K",
      help="stage 1: K frames of each training trajectory per epoch, drawn anew each epoch "
           "(seeded; default: all frames)")
    a("--frames-per-trajectory-stage2", type=int, default=None, metavar="K",
      help="stage 2: K training windows of each trajectory per epoch (default: all)")
    a("--stage2-step", type=int, default=d.stage2_step, metavar="FRAMES",
      help="the dynamics' time step in frame spacings: stage 2 fits transitions this many frames apart")
    a("--stage2-horizon", type=int, default=d.stage2_horizon, metavar="H",
      help="add a multi-step objective over H steps (ODE: unrolled path error; SDE: energy score of sampled "
           "paths); 1: the one-step loss only")
    a("--stage2-horizon-weight", type=float, default=d.stage2_horizon_weight,
      help="weight of the multi-step objective")
    a("--stage2-seeds", type=int, default=d.stage2_seeds, metavar="N",
      help="train stage 2 N times from fresh weights and keep the best by the validation rollout score")
    a("--select", choices=["rollout", "one-step"], default=d.select,
      help="keep the stage-2 snapshot with the best rollout score on the validation trajectories, or the lowest "
           "one-step validation loss")
    a("--select-data", nargs="+", default=list(d.select_data), metavar="DATASET",
      help="datasets whose trajectories also score the stage-2 snapshots (never trained on), e.g. another "
           "particle number; the score is pooled over the validation trajectories and these sets, each set "
           "weighted by its number of trajectories")
    a("--select-every", type=int, default=None, metavar="EPOCHS",
      help="score the rollouts every this many stage-2 epochs (default: 1/25 of --epochs-stage2, at least 1)")
    a("--select-samples", type=int, default=d.select_samples,
      help="SDE rollouts per validation trajectory when scoring")
    a("--loader-workers", type=int, default=d.loader_workers,
      help="DataLoader processes assembling stage-1 batches while the model trains (0: in process); "
           "results do not depend on it")
    a("--amp", action="store_true",
      help="bf16 autocast of stage 1's forward pass (for GPUs; 6x slower on the CPUs measured, "
           "see the performance page)")
    a("--seed", type=int, default=d.seed,
      help="seed of the initialisation, the validation split, the data order and the Monte Carlo draws")
    a("--val-fraction", type=float, default=d.val_fraction, help="fraction of replicas held out")
    add_device_argument(parser)
    a("--threads", type=int, default=None,
      help="torch CPU threads (default: torch's; 1 is often fastest on busy small machines)")
    a("--resume", action="store_true", help="continue the run checkpointed in --out")
    a("--stop-after", type=int, default=None, metavar="EPOCHS",
      help="stop after this many epochs (checkpoint kept; continue with --resume)")
    a("--no-progress", action="store_true", help="no progress bars or epoch lines")
    add_config_arguments(parser)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``train`` arguments (flags map one to one)."""
    cfg = TrainConfig(data=args.data or "", out=args.out or "")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("data", "out", "progress"):
            continue
        if hasattr(args, f.name):
            setattr(cfg, f.name, getattr(args, f.name))
    if getattr(args, "epochs", None) is not None:
        cfg.epochs_stage1 = cfg.epochs_stage2 = int(args.epochs)
    cfg.progress = False if getattr(args, "no_progress", False) else None
    return cfg


def effective_config_text(args: argparse.Namespace) -> str:
    """The TOML ``--print-config`` prints: every option of the run, as ``--config`` reads it."""
    from ..learn.config_file import toml_text

    values = train_config_values(config_from_args(args))
    for key in ("data", "out"):
        values[key] = values[key] or None  # not given yet: a comment
    return toml_text(values, header="openmm-closure train: effective options (use with --config FILE)")


def run(args: argparse.Namespace) -> int:
    """Execute ``openmm-closure train``; returns the exit code."""
    if args.print_config:
        sys.stdout.write(effective_config_text(args))
        return 0
    missing = [f"--{k}" for k in ("data", "out") if not getattr(args, k)]
    if missing:
        raise ValueError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required "
                         "(on the command line or in --config FILE)")
    cfg = config_from_args(args)
    model = train(cfg)
    if not is_main_process():
        return 0  # under torchrun, rank 0 reports
    if model is None:
        print(f"stopped after {args.stop_after} epoch(s); continue with --resume", file=sys.stderr)
    else:
        print(f"model written to {cfg.out}")
    return 0
