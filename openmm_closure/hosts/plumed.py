r"""PLUMED ``PYTORCH_MODEL`` profile: ẑ as PLUMED components ``node-0 .. node-(d-1)``.

Follows plumed2 ``src/pytorch/PytorchModel.cpp``: PLUMED loads the file with
``torch::jit::load``, calls ``forward`` once at start-up with a zero float32 tensor of
shape (1, n_args) to count the outputs, then every step with the float32 (1, n_args)
tensor of its arguments (``requires_grad`` set), reads the output through
``data_ptr<float>`` (so the output must be float32) and takes the derivative of each
output column ``output[:, j]`` with respect to the input by ``torch::autograd::grad``.

Here the arguments are the x, y, z components of the listed atoms (``POSITION`` actions,
nm, PLUMED's default length unit), flattened atom by atom: ``[x1, y1, z1, x2, ...]``.
"""

from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from .common import EncoderCore, register_baked_types

__all__ = ["PlumedClosure", "plumed_input", "validate_plumed"]

FILE = "plumed_model.pt"
FRAGMENT = "plumed_model.dat"


class PlumedClosure(nn.Module):
    """ẑ of the listed atoms with PLUMED's ``PYTORCH_MODEL`` calling convention.

    Arguments:
        encoder: the model's set encoder (a deep copy is taken).
        types: (n,) int64 species of the listed atoms (baked in; then n is fixed), or None
            for a one-species model (any n).
    """

    n_particles: int
    latent_dim: int

    def __init__(self, encoder: nn.Module, types: Optional[Tensor]):
        super().__init__()
        self.core = EncoderCore(encoder)
        self.latent_dim = int(encoder.latent_dim)
        register_baked_types(self, types)

    def forward(self, x: Tensor) -> Tensor:
        """Closure variables of the listed atoms.

        Arguments:
            x: (1, 3 n) float32 positions in nm, ``[x1, y1, z1, x2, ...]``.

        Returns:
            (1, d) float32 raw ẑ (dimensionless): PLUMED components node-0 .. node-(d-1).
        """
        if x.dim() != 2 or x.shape[0] != 1 or x.shape[1] % 3 != 0:
            raise ValueError("expected PLUMED arguments of shape (1, 3 n): x, y, z of each atom")
        n = x.shape[1] // 3
        if self.n_particles >= 0:
            if n != self.n_particles:
                raise ValueError("this model was exported for " + str(self.n_particles)
                                 + " atoms (" + str(3 * self.n_particles) + " arguments), got "
                                 + str(x.shape[1]) + " arguments")
            types = self.types
        else:
            types = torch.zeros(n, dtype=torch.long, device=x.device)
        z = self.core(x.reshape(n, 3), types)
        return z.to(torch.float32).unsqueeze(0)


def plumed_input(n_particles: int, latent_dim: int, model_file: str = FILE, label: str = "closure",
                 force_constant: float = 1.0, target: float = 0.0, any_n: bool = False) -> str:
    """A ready ``plumed.dat`` fragment for the exported model.

    Arguments:
        n_particles: number of listed atoms (PLUMED atom numbers 1..n; edit ATOM= to map).
        latent_dim: d, the number of components node-0 .. node-(d-1).
        model_file: path of the exported module as PLUMED will open it.
        label: label of the PYTORCH_MODEL action.
        force_constant: KAPPA of the commented RESTRAINT example, kJ/mol.
        target: AT of the commented RESTRAINT example (raw ẑ units).
        any_n: the model takes any number of atoms (one species, nothing baked in); the
            fragment lists ``n_particles`` as an example and says so.

    Returns:
        The fragment text (units: nm, kJ/mol, ps: PLUMED's defaults).
    """
    lines = [
        "# openmm-closure: closure variables as PLUMED collective variables",
        "# units: PLUMED defaults (length nm, energy kJ/mol, time ps); the model expects nm.",
        *((f"# the model takes the x, y, z of any number of atoms of its one species; this fragment",
           f"# lists {n_particles} (the count it was trained on): edit the POSITION lines and ARG= to pick yours.")
          if any_n else
          (f"# the model takes the x, y, z of exactly {n_particles} atoms in this order (edit ATOM= to",
           "# pick your atoms; the species of each are baked into the model in the same order).")),
        "# NOPBC: the positions are passed as they are (make the set whole first if it can",
        "# cross the box edge, e.g. with WHOLEMOLECULES).",
    ]
    args = []
    for i in range(n_particles):
        lines.append(f"p{i + 1}: POSITION ATOM={i + 1} NOPBC")
        args += [f"p{i + 1}.x", f"p{i + 1}.y", f"p{i + 1}.z"]
    lines.append(f"{label}: PYTORCH_MODEL FILE={model_file} ARG={','.join(args)}")
    comps = ",".join(f"{label}.node-{j}" for j in range(latent_dim))
    lines.append(f"PRINT FILE=COLVAR STRIDE=100 ARG={comps}")
    lines += [
        "# a harmonic bias on the first closure variable (0.5 KAPPA (node-0 - AT)^2, kJ/mol):",
        f"# restraint: RESTRAINT ARG={label}.node-0 AT={target!r} KAPPA={force_constant!r}",
        "# or metadynamics on it (SIGMA in raw closure units):",
        f"# metad: METAD ARG={label}.node-0 SIGMA=0.05 HEIGHT=1.0 PACE=500 BIASFACTOR=10 TEMP=300",
    ]
    return "\n".join(lines) + "\n"


def validate_plumed(path: Path, encoder: nn.Module, positions, types, atol: float = 1e-5) -> float:
    """Load ``path`` and call it as ``PytorchModel.cpp`` does; compare with the eager encoder.

    Arguments:
        path: the saved module.
        encoder: the model's encoder (eager reference).
        positions: (n, 3) nm test configuration.
        types: (n,) int64 species.
        atol: tolerance on ẑ and on each derivative (float32 host arithmetic), scaled by
            max(1, |value|).

    Returns:
        The largest deviation found.

    Raises:
        RuntimeError: the saved module disagrees with the eager model.
    """
    module = torch.jit.load(str(path), map_location="cpu")
    n = len(positions)
    pos32 = torch.as_tensor(positions, dtype=torch.float32)
    types = torch.as_tensor(types, dtype=torch.long)
    n_out = module(torch.zeros(1, 3 * n, dtype=torch.float32)).numel()  # PLUMED's start-up probe
    x = pos32.reshape(1, 3 * n).clone().requires_grad_(True)
    out = module(x)
    if out.dtype != torch.float32 or tuple(out.shape) != (1, n_out):
        raise RuntimeError(f"{path.name}: PLUMED needs a float32 (1, n_out) output, got {out.dtype} {tuple(out.shape)}")
    p = pos32.clone().requires_grad_(True)
    want = encoder(p, types)
    worst = 0.0
    for j in range(n_out):
        (g,) = torch.autograd.grad(out[:, j : j + 1], x, torch.ones(1, 1), retain_graph=True)
        (gw,) = torch.autograd.grad(want[j], p, retain_graph=True)
        worst = max(worst, _dev(out[0, j], want[j]), _dev(g.reshape(n, 3), gw))
    if worst > atol:
        raise RuntimeError(f"{path.name}: PLUMED-style call differs from the eager model by {worst:.3g} (> {atol})")
    return worst


def _dev(a: Tensor, b: Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float(((a - b).abs() / b.abs().clamp(min=1.0)).max())
