r"""GROMACS NNPot profile: the harmonic closure bias as a neural-network potential.

Follows GROMACS ``src/gromacs/applied_forces/nnpot/torchmodel.cpp`` (inputs) and
``nnpotoptions.cpp`` (the .mdp options): GROMACS loads the file with
``torch::jit::load``, pushes the inputs named by ``nnpot-model-input1..4`` in that
order — ``atom-positions`` float32 (N, 3) nm with ``requires_grad``, ``atom-numbers``
int32 (N), ``box`` float32 (3, 3) nm, ``pbc`` bool (3) — calls ``forward``, reads the
energy (kJ/mol) with ``item()`` and, when the model returns no forces, takes
``F = -∂E/∂positions`` by ``backward()`` on the energy. N atoms of the ``nnpot-input-group``
index group, in ascending atom index order.

The bias ignores the atomic numbers (the species of the group are baked in at export),
the box and pbc: the closure encoder sees the positions as they are.
"""

from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from .common import EncoderCore, register_baked_types

__all__ = ["NNPotClosureBias", "mdp_lines", "validate_gromacs"]

FILE = "nnpot_model.pt"
MDP = "nnpot_model.mdp"
INPUTS = ("atom-positions", "atom-numbers", "box", "pbc")


class NNPotClosureBias(nn.Module):
    r"""Harmonic bias ``0.5 k (ẑ_c(X) - target)²`` (kJ/mol) with NNPot's inputs.

    Arguments:
        encoder: the model's set encoder (a deep copy is taken).
        component: index c of the biased closure variable.
        force_constant: k in kJ/mol.
        target: target of ẑ_c (raw units).
        types: (N,) int64 species of the group's atoms (baked; N fixed), or None for a
            one-species model (any N).
    """

    component: int
    force_constant: float
    target: float
    n_particles: int

    def __init__(self, encoder: nn.Module, component: int, force_constant: float, target: float,
                 types: Optional[Tensor]):
        super().__init__()
        d = int(encoder.latent_dim)
        if not 0 <= int(component) < d:
            raise ValueError(f"component must be in [0, {d}), got {component}")
        self.core = EncoderCore(encoder)
        self.component = int(component)
        self.force_constant = float(force_constant)
        self.target = float(target)
        register_baked_types(self, types)

    def forward(self, positions: Tensor, atomic_numbers: Tensor, box: Tensor, pbc: Tensor) -> Tensor:
        """Bias energy.

        Arguments:
            positions: (N, 3) float32 nm (GROMACS sets ``requires_grad``).
            atomic_numbers: (N,) int32 (shape checked; species are baked in).
            box: (3, 3) float32 nm (unused).
            pbc: (3,) bool (unused).

        Returns:
            () float32 energy in kJ/mol.
        """
        n = positions.shape[0]
        if positions.dim() != 2 or positions.shape[1] != 3:
            raise ValueError("atom-positions must have shape (N, 3)")
        if atomic_numbers.dim() != 1 or atomic_numbers.shape[0] != n:
            raise ValueError("atom-numbers must have shape (N,) matching atom-positions")
        if self.n_particles >= 0:
            if n != self.n_particles:
                raise ValueError("this bias was exported for " + str(self.n_particles)
                                 + " atoms in the nnpot-input-group, got " + str(n))
            types = self.types.to(positions.device)
        else:
            types = torch.zeros(n, dtype=torch.long, device=positions.device)
        zc = self.core(positions, types)[self.component].to(positions.dtype)
        return 0.5 * self.force_constant * (zc - self.target) ** 2


def mdp_lines(model_file: str = FILE, group: str = "closure", n_particles: Optional[int] = None) -> str:
    """The .mdp lines selecting this model and its inputs, with the index-group note."""
    n = "the atoms the model was exported for" if n_particles is None else f"exactly {n_particles} atoms"
    lines = [
        "; openmm-closure: harmonic closure bias as a GROMACS NNPot model (GROMACS >= 2025,",
        "; built with -DGMX_NNPOT=TORCH). Energy kJ/mol, positions nm; forces by autograd.",
        f"; index group '{group}' (gmx make_ndx): {n}, in ascending atom order;",
        "; the species of each are baked into the model in that order.",
        "; grompp checks the model with a one-atom dummy input: a model exported for a fixed",
        "; atom count answers that check with an error, which grompp reports as a warning only.",
        "nnpot-active        = yes",
        f"nnpot-modelfile     = {model_file}",
        f"nnpot-input-group   = {group}",
    ]
    lines += [f"nnpot-model-input{i + 1}  = {name}" for i, name in enumerate(INPUTS)]
    return "\n".join(lines) + "\n"


def validate_gromacs(path: Path, encoder: nn.Module, component: int, force_constant: float, target: float,
                     positions, types, rtol: float = 1e-5) -> float:
    """Load ``path`` and call it as ``torchmodel.cpp`` does; compare energy and forces
    with the eager encoder. Returns the largest relative deviation.

    Raises:
        RuntimeError: the saved module disagrees with the eager model.
    """
    module = torch.jit.load(str(path), map_location="cpu")
    module.eval()
    n = len(positions)
    pos32 = torch.as_tensor(positions, dtype=torch.float32)
    x = pos32.clone().requires_grad_(True)
    inputs = [x, torch.ones(n, dtype=torch.int32), torch.eye(3, dtype=torch.float32),
              torch.ones(3, dtype=torch.bool)]
    e = module(*inputs)
    x.retain_grad()
    e.backward()
    forces = -x.grad
    p = pos32.clone().requires_grad_(True)
    zc = encoder(p, torch.as_tensor(types, dtype=torch.long))[component].to(torch.float32)
    ew = 0.5 * force_constant * (zc - target) ** 2
    (gw,) = torch.autograd.grad(ew, p)
    scale_f = max(1.0, float(gw.abs().max()))
    e, ew = e.detach(), ew.detach()
    worst = max(abs(float(e) - float(ew)) / max(1.0, abs(float(ew))),
                float((forces + gw).abs().max()) / scale_f)
    if e.numel() != 1 or worst > rtol:
        raise RuntimeError(f"{path.name}: NNPot-style call differs from the eager model by {worst:.3g} (> {rtol})")
    return worst
