"""The ``--device`` argument, one meaning for every subcommand that runs the networks
(``train``, ``evaluate``, ``rollout``): the torch device of the model.

``auto`` is CUDA when torch sees a GPU and the CPU otherwise; ``cuda`` without a GPU is
an error, not a silent fall-back. The OpenMM side has its own choice, ``simulate
--platform``. Resolved by :func:`openmm_closure.learn.model.resolve_device` (and, for
training, where the process group is set up), so Dask workers and torchrun processes
each resolve ``auto`` on their own machine.
"""

from __future__ import annotations

import argparse

__all__ = ["DEVICES", "add_device_argument"]

#: the values ``--device`` accepts
DEVICES = ("auto", "cpu", "cuda")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--device auto|cpu|cuda`` (default ``auto``) to ``parser``."""
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="torch device of the networks: auto (CUDA when torch sees a GPU, else the CPU), "
                             "cpu, or cuda (an error where there is none); OpenMM's is --platform")
