"""Helpers the host profiles share: the export-able encoder core, baked species, a test set."""

import copy
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["EncoderCore", "baked_types", "probe_positions", "register_baked_types"]


class EncoderCore(nn.Module):
    """The encoder without its Python-side argument checks (which read tensor values and
    so cannot be traced by ``torch.export``): normalise, pool, ρ.

    Arguments:
        encoder: the model's set encoder (a deep copy is taken).
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = copy.deepcopy(encoder)

    def forward(self, positions: Tensor, types: Tensor) -> Tensor:
        """ẑ of one set.

        Arguments:
            positions: (n, 3) nm, any float dtype.
            types: (n,) int64 species indices (not range-checked here).

        Returns:
            (d,) raw ẑ (dimensionless), in the weights' dtype.
        """
        if positions.shape[0] == 0:
            raise ValueError("an empty set (0 particles) has no closure variables: pass at least one particle")
        x = self.encoder.normalize(positions)
        types = types.to(device=x.device, dtype=torch.long)
        return self.encoder.forward_flat(x, types, torch.zeros_like(types), 1)[0]


def baked_types(encoder: nn.Module, types: Optional[Any], host: str) -> Optional[Tensor]:
    """The (n,) int64 species to bake into a host module, or None (one species, any n).

    Raises:
        ValueError: a multi-species model without ``types``, or types out of range.
    """
    s = int(encoder.n_species)
    if types is None:
        if s != 1:
            raise ValueError(f"--host {host}: the model has {s} species and {host} passes no species; "
                             "pass the species of every particle with --types")
        return None
    t = torch.as_tensor(np.asarray(types), dtype=torch.long).reshape(-1)
    if t.numel() == 0 or int(t.min()) < 0 or int(t.max()) >= s:
        raise ValueError(f"--host {host}: types must be species indices in [0, {s}) for every particle")
    return t


def probe_positions(meta: dict, n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) float64 positions in nm spread over the model's coordinate range (z = 0 for
    2D models): the configuration each profile is validated on at export time."""
    rng = np.random.default_rng(seed)
    lo = np.asarray(meta["coordinate_range"]["lo"], dtype=np.float64)
    hi = np.asarray(meta["coordinate_range"]["hi"], dtype=np.float64)
    pos = np.zeros((n, 3))
    pos[:, : lo.size] = lo + rng.random((n, lo.size)) * (hi - lo)
    if meta["coordinate_range"].get("centered_per_set"):
        pos[:, : lo.size] += rng.uniform(-1.0, 1.0, lo.size)  # any offset: ẑ is translation invariant
    return pos


def register_baked_types(module: nn.Module, types: Optional[Tensor]) -> None:
    """Give a host module its baked species: the ``types`` buffer ((n,) int64, empty for a
    one-species model) and ``n_particles`` (n, or -1 where any n is accepted)."""
    if types is None:
        module.n_particles = -1
        types = torch.zeros(0, dtype=torch.long)
    else:
        module.n_particles = int(types.numel())
    module.register_buffer("types", types.clone())
