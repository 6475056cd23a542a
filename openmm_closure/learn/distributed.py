"""Data-parallel training under ``torchrun``: the process group, each process's share of
a batch, and the DistributedDataParallel (DDP) wrapper of a loss.

``torchrun --nproc_per_node P -m openmm_closure.cli train ...`` starts P processes with
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` set; :func:`from_environment` finds them and
joins the process group (gloo for a CPU device, NCCL for CUDA, chosen from the device).
Without those variables it returns :data:`SINGLE`, which does nothing, so a plain run is
unchanged.

How a step is split. ``--batch-size`` is the GLOBAL batch: each step's sets are ordered
as one process would batch them, and process r takes the contiguous share
:func:`share` gives it (sizes differ by at most one; a share may be empty in an epoch's
last, short batch). Each process's loss is the mean over its share times
``share size * P / batch size``, so DDP's average of the gradients is the gradient of
the mean over the whole batch: no set is dropped or padded. Random draws of a step
(Monte Carlo samples, permutations) are made for the whole batch on every process and
each takes its share's rows (``SetBatch.first_set`` / ``total_sets``), so a run with P
processes follows a single process's run to floating-point rounding.

zuko flows return distributions, which DDP cannot wrap: :class:`LossModule` holds a
stage's parameters and its ``forward`` returns the loss tensor of a step.

Example:
    >>> share(10, 0, 4), share(10, 3, 4), share(1, 1, 2)
    ((0, 3), (8, 10), (1, 1))
    >>> SINGLE.world, SINGLE.is_main, SINGLE.active
    (1, True, False)
"""

from __future__ import annotations

import io
import os
from datetime import timedelta
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

__all__ = ["TORCHRUN_VARIABLES", "Distributed", "SINGLE", "LossModule", "from_environment", "share",
           "is_main_process"]

#: the variables ``torchrun`` sets in every process it starts
TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


def share(n: int, rank: int, world: int) -> tuple[int, int]:
    """Process ``rank``'s share ``[start, stop)`` of ``n`` ordered items split over ``world``
    processes as evenly as possible (the first ``n % world`` processes get one more).

    Arguments:
        n: number of items (sets or frame pairs of one step), >= 0.
        rank: this process, in [0, world).
        world: number of processes P >= 1.

    Returns:
        ``(start, stop)`` item indices; ``start == stop`` when the share is empty.
    """
    base, extra = divmod(int(n), int(world))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class LossModule(nn.Module):
    """The module DDP wraps: the parameters a stage trains, and a ``forward`` that
    returns a step's () loss tensor (never a distribution).

    Arguments:
        params: the trained parameters (e.g. encoder and flow decoder in stage 1).

    ``forward(loss_fn)`` calls ``loss_fn()``, which returns the () loss of this process's
    share, or None when the share is empty. A zero multiple of every parameter is added so
    that each parameter is in the graph and DDP's reducer receives a gradient for each,
    even from an empty share or an objective that leaves a parameter unused (the value
    and the gradients are unchanged: x + 0 = x).
    """

    def __init__(self, params: Sequence[nn.Parameter]):
        super().__init__()
        self.trained = nn.ParameterList(list(params))

    def forward(self, loss_fn: Callable[[], Optional[Tensor]]) -> Tensor:
        loss = loss_fn()
        zero = 0.0 * torch.stack([p.sum() for p in self.trained]).sum()
        return zero if loss is None else loss + zero.to(loss.dtype)


class Distributed:
    """This process's place in a data-parallel run (:data:`SINGLE` without torchrun).

    Attributes:
        rank, world, local_rank: this process, the number of processes P, its index on
            its machine.
        device: the torch device this process trains on.
        active: True under torchrun (even with P = 1): collectives and DDP are used.
        is_main: True on rank 0, the process that writes checkpoints and model files.
    """

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0,
                 device: Optional[torch.device] = None, active: bool = False, owns_group: bool = False):
        self.rank, self.world, self.local_rank = int(rank), int(world), int(local_rank)
        self.device = device if device is not None else torch.device("cpu")
        self.active = bool(active)
        self.owns_group = bool(owns_group)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> tuple[int, int]:
        """This process's ``[start, stop)`` of ``n`` ordered items (see :func:`share`)."""
        return share(n, self.rank, self.world)

    def weight(self, n: int) -> float:
        """Factor of this process's share-mean loss of a step of ``n`` items, so that DDP's
        gradient average is the gradient of the mean over all ``n``: share size * P / n."""
        start, stop = self.share(n)
        return (stop - start) * self.world / n

    # ------------------------------------------------------------ collectives
    def _comm(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def barrier(self) -> None:
        """Wait for every process (nothing without torchrun)."""
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, values: Sequence[float]) -> list[list[float]]:
        """Every process's ``values`` (float64), in rank order, on every process."""
        if not self.active:
            return [list(map(float, values))]
        import torch.distributed as dist

        mine = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._comm())
        out = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(out, mine)
        return [t.cpu().tolist() for t in out]

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over the processes, added in rank order, so every process gets
        the same bits (and the same decisions)."""
        rows = self.gather(values)
        total = rows[0]
        for row in rows[1:]:
            total = [a + b for a, b in zip(total, row)]
        return total

    def same(self, value: Optional[float]) -> Optional[float]:
        """Rank 0's ``value`` on every process (None stays None everywhere)."""
        if not self.active:
            return value
        v = self.gather([float("nan") if value is None else value])[0][0]
        return None if value is None else v

    def wrap(self, params: Sequence[nn.Parameter]) -> Callable[[Callable[[], Optional[Tensor]]], Tensor]:
        """A step caller for the given trained parameters: ``call(loss_fn)`` returns the
        loss to back-propagate. Without torchrun it is ``loss_fn()`` itself; under torchrun
        the loss goes through a DDP-wrapped :class:`LossModule`, whose backward averages
        the gradients over the processes (the construction broadcasts rank 0's values)."""
        if not self.active:
            return lambda loss_fn: loss_fn()
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(LossModule(params),
                                      device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return lambda loss_fn: ddp(loss_fn)

    def rng_states(self, state: Callable[[], dict]) -> dict:
        """Every process's RNG state ``state()`` for the checkpoint, gathered on every
        process: ``{"world_size": P, "rng_ranks": [state of rank 0, ...]}`` (an empty
        dict without torchrun). The states travel as ``torch.save`` bytes and are read back
        with ``weights_only=True``."""
        if not self.active:
            return {}
        import torch.distributed as dist

        buf = io.BytesIO()
        torch.save(state(), buf)
        mine = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
        sizes = [int(n) for n, in self.gather([mine.numel()])]
        padded = torch.zeros(max(sizes), dtype=torch.uint8)
        padded[: mine.numel()] = mine
        padded = padded.to(self._comm())
        out = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(out, padded)
        states = [torch.load(io.BytesIO(t.cpu().numpy()[:n].tobytes()), weights_only=True)
                  for t, n in zip(out, sizes)]
        return {"world_size": self.world, "rng_ranks": states}

    def rng_state_of(self, checkpoint: dict) -> dict:
        """The RNG state this process resumes with: its own when the checkpoint was written
        by as many processes, else rank 0's (``checkpoint["rng"]``)."""
        ranks = checkpoint.get("rng_ranks")
        if self.active and ranks is not None and checkpoint.get("world_size") == self.world:
            return ranks[self.rank]
        return checkpoint["rng"]

    def close(self) -> None:
        """Leave the process group if :func:`from_environment` created it."""
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.owns_group = False


#: the plain, single-process run: no process group, no collectives
SINGLE = Distributed()


def is_main_process() -> bool:
    """True outside torchrun and on its rank 0 (the process that reports to the user)."""
    return os.environ.get("RANK", "0").strip() == "0"


def _env_int(name: str) -> int:
    text = os.environ[name]
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"torchrun variable {name}={text!r} is not an integer; start the run with torchrun "
                         f"or unset {', '.join(TORCHRUN_VARIABLES)}") from None


def from_environment(device: torch.device, timeout_s: float = 1800.0) -> Distributed:
    """Join the ``torchrun`` process group when its variables are set, else :data:`SINGLE`.

    Arguments:
        device: the device chosen for training (``cpu`` -> gloo; ``cuda`` -> NCCL, each
            process on GPU ``LOCAL_RANK``).
        timeout_s: seconds a collective waits for a missing process before failing.

    Returns:
        The :class:`Distributed` of this process; its ``device`` is the one to train on.

    Raises:
        ValueError: the torchrun variables are incomplete or not integers, or a process
            has no GPU of its own.
        RuntimeError: this torch build lacks torch.distributed or the backend the device
            needs (e.g. NCCL for CUDA).
    """
    present = [k for k in TORCHRUN_VARIABLES if k in os.environ]
    if not present:
        return SINGLE
    if len(present) != len(TORCHRUN_VARIABLES):
        missing = [k for k in TORCHRUN_VARIABLES if k not in os.environ]
        raise ValueError(f"incomplete torchrun environment: {', '.join(present)} set but {', '.join(missing)} "
                         f"not; start the run with torchrun, or unset {', '.join(present)}")
    world, rank, local = (_env_int(k) for k in TORCHRUN_VARIABLES)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"inconsistent torchrun environment: WORLD_SIZE={world}, RANK={rank}, "
                         f"LOCAL_RANK={local}; start the run with torchrun")
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed: training under torchrun is not "
                           "possible; run `openmm-closure train` without torchrun")
    device = torch.device(device)
    if device.type == "cuda":
        backend = "nccl"
        if not dist.is_nccl_available():
            raise RuntimeError("training on CUDA under torchrun needs NCCL, which this torch build lacks; "
                               "pass --device cpu (gloo) or install a torch build with NCCL")
        n_gpu = torch.cuda.device_count()
        if local >= n_gpu:
            raise ValueError(f"process with LOCAL_RANK {local} has no GPU of its own ({n_gpu} visible): "
                             f"start at most {n_gpu} processes per machine (--nproc_per_node {n_gpu})")
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        backend = "gloo"
        if not dist.is_gloo_available():
            raise RuntimeError("training on CPU under torchrun needs the gloo backend, which this torch "
                               "build lacks")
    owns = False
    if dist.is_initialized():
        if dist.get_world_size() != world or dist.get_rank() != rank:
            raise ValueError("torch.distributed is already initialised with another world size or rank "
                             "than the torchrun variables say")
    else:
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise ValueError(f"incomplete torchrun environment: {name} is not set; start the run "
                                 "with torchrun")
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
        owns = True
    return Distributed(rank, world, local, device, active=True, owns_group=owns)
