r"""GROMACS profile: closure variables as Colvars ``torchANN`` collective variables.

Why Colvars and not NNPot. GROMACS' NNPot module (``src/gromacs/applied_forces/nnpot``) is
an NNP/MM interface: ``E_tot = E_NNP + E_MM + E_NNP-MM``, and grompp's
``NNPotTopologyPreprocessor`` excludes the non-bonded interactions among the atoms of
``nnpot-input-group``, turns their bonds into connection-only bonds and removes angles
(2+ NNP atoms) and dihedrals (3+), so the model's energy *replaces* the group's own force
field. A closure bias shipped as an NNPot model would delete the physics it is meant to
bias. :data:`NNPOT_REFUSAL` says so when ``--host gromacs-nnpot`` is asked for.

The route that adds a bias on ẑ and leaves the system's interactions alone is the Colvars
library GROMACS builds in (``cmake/gmxManageColvars.cmake``): from GROMACS 2025, when GROMACS
is built with LibTorch (``-DGMX_NNPOT=TORCH``, the same build NNPot needs) it compiles
Colvars with ``COLVARS_TORCH``, which enables the ``torchANN`` component
(``src/external/colvars/colvarcomp_torchann.cpp``). Its calling code: ``torch::jit::load``
of ``modelFile``, moved to the CPU (and to float64 with ``doubleInputTensor yes``); the
inputs are the values of the sub-components, here one ``cartesian`` component whose value
is ``x1, y1, z1, x2, ...`` of its atoms (``colvarcomp_distances.cpp``), as one
(1, n_inputs) float32 tensor with ``requires_grad``; a zero tensor is evaluated once at
start-up; then every step ``forward(input).toTensor()[0][m_output_index]`` is the
variable and ``torch::autograd::grad`` of it with respect to the input gives the
derivatives that Colvars turns into atomic forces. Units are GROMACS' (nm, kJ/mol;
``colvarproxygromacs.cpp`` accepts no other unit system), and the GROMACS proxy makes the
Colvars atom groups whole across periodic boundaries before computing.

That is PLUMED's ``PYTORCH_MODEL`` convention too (float32 (1, n_args) in, (1, d) out,
autograd): the module is :class:`~openmm_closure.hosts.plumed.PlumedClosure`, saved as
``colvars_model.pt``. The same export also serves ``gmx mdrun -plumed`` (GROMACS >= 2025
ships a basic PLUMED interface; PLUMED built with ``--enable-libtorch``) through
``--host plumed``.

Files: ``colvars_model.pt`` (+ ``.json``), ``gromacs_colvars.dat`` (the Colvars
configuration: one ``colvar`` per closure component and a ``harmonic`` bias on the chosen
one, a commented well-tempered ``metadynamics`` block) and ``gromacs_colvars.mdp`` (the
``colvars-active`` / ``colvars-configfile`` lines).
"""

from pathlib import Path
from typing import List

import torch
from torch import nn

__all__ = ["NNPOT_REFUSAL", "FILE", "CONFIG", "MDP", "colvars_config", "mdp_lines", "validate_colvars"]

FILE = "colvars_model.pt"
CONFIG = "gromacs_colvars.dat"
MDP = "gromacs_colvars.mdp"

#: why ``--host gromacs-nnpot`` is refused (one line)
NNPOT_REFUSAL = (
    "--host gromacs-nnpot is refused: GROMACS NNPot is NNP/MM (grompp removes the input group's own "
    "non-bonded interactions, bonds, angles and dihedrals and uses the model's energy instead), so a "
    "closure bias shipped as an NNPot model would replace the group's force field; use --host gromacs "
    "(Colvars torchANN, which adds the bias) or --host plumed (gmx mdrun -plumed)"
)


def colvars_config(n_particles: int, latent_dim: int, names: List[str], model_file: str = FILE, component: int = 0,
                   force_constant: float = 1.0, target: float = 0.0) -> str:
    """The Colvars configuration for GROMACS' ``colvars-configfile``.

    Arguments:
        n_particles: atoms passed to the model (GROMACS atom numbers 1..n; edit
            ``atomNumbers`` to map them to yours, in the order the species were baked).
        latent_dim: d, one ``colvar`` per closure component.
        names: the d closure variable names (``zhat_0`` ...).
        model_file: the TorchScript file as GROMACS will open it.
        component: the closure component the ``harmonic`` bias acts on.
        force_constant: its force constant, kJ/mol (Colvars' ``width`` is 1: ẑ is raw).
        target: its centre (raw ẑ units).

    Returns:
        The configuration text.
    """
    atoms = " ".join(str(i + 1) for i in range(n_particles))
    lines = [
        "# openmm-closure: closure variables as Colvars collective variables in GROMACS (>= 2025,",
        "# built with LibTorch: -DGMX_NNPOT=TORCH enables Colvars' torchANN). Units: nm, kJ/mol.",
        f"# The model takes the x, y, z of {n_particles} atoms in this order (edit atomNumbers to",
        "# pick your atoms; the species of each are baked into the model in the same order).",
        "# Only this bias is added: the system's own interactions are untouched.",
        "colvarsTrajFrequency 100",
        "",
    ]
    for j in range(latent_dim):
        lines += [
            "colvar {",
            f"  name {names[j]}",
            "  torchANN {",
            f"    modelFile {model_file}",
            f"    m_output_index {j}   # GROMACS 2026 also reads it as output_component {j}",
            "    doubleInputTensor no",
            "    cartesian {",
            f"      atoms {{ atomNumbers {atoms} }}",
            "    }",
            "  }",
            "}",
            "",
        ]
    lines += [
        f"# harmonic bias 0.5 * forceConstant * ({names[component]} - centers)^2, kJ/mol",
        "harmonic {",
        "  name closure_restraint",
        f"  colvars {names[component]}",
        f"  centers {target!r}",
        f"  forceConstant {force_constant!r}",
        "}",
        "",
        f"# or well-tempered metadynamics on it (give {names[component]} lowerBoundary,",
        "# upperBoundary and width in raw closure units first):",
        "# metadynamics {",
        f"#   colvars {names[component]}",
        "#   hillWeight 1.0",
        "#   newHillFrequency 500",
        "#   wellTempered on",
        "#   biasTemperature 1200",
        "# }",
    ]
    return "\n".join(lines) + "\n"


def mdp_lines(config_file: str = CONFIG) -> str:
    """The .mdp lines that switch Colvars on with this configuration."""
    return "\n".join([
        "; openmm-closure: bias closure variables through the Colvars module (adds a bias;",
        "; the force field is untouched). GROMACS must be built with LibTorch for torchANN.",
        "colvars-active      = yes",
        f"colvars-configfile  = {config_file}",
    ]) + "\n"


def validate_colvars(path: Path, encoder: nn.Module, positions, types, atol: float = 1e-5) -> float:
    """Load ``path`` and call it as ``colvarcomp_torchann.cpp`` does (zero-tensor check at
    start-up; (1, 3n) float32 input with ``requires_grad``; ``output[0][j]``; autograd),
    also in float64 as ``doubleInputTensor yes`` does; compare with the eager encoder.

    Returns:
        The largest deviation (relative to max(1, |value|)).

    Raises:
        RuntimeError: the saved module disagrees with the eager model.
    """
    worst = 0.0
    n = len(positions)
    typ = torch.as_tensor(types, dtype=torch.long)
    for dtype in (torch.float32, torch.float64):
        module = torch.jit.load(str(path), map_location="cpu")
        module.to(dtype)
        zero = torch.zeros(1, 3 * n, dtype=dtype, requires_grad=True)
        d = module(zero).shape[1]
        x = torch.as_tensor(positions, dtype=dtype).reshape(1, 3 * n).clone().requires_grad_(True)
        p = torch.as_tensor(positions, dtype=torch.float32).clone().requires_grad_(True)
        want = encoder(p, typ)
        for j in range(d):
            out = module(x)[0][j]
            (g,) = torch.autograd.grad(out, x)
            (gw,) = torch.autograd.grad(want[j], p, retain_graph=True)
            scale = max(1.0, float(gw.abs().max()))
            dev = max(abs(float(out.detach()) - float(want[j].detach())) / max(1.0, abs(float(want[j].detach()))),
                      float((g.reshape(n, 3).double() - gw.double()).abs().max()) / scale)
            worst = max(worst, dev)
    if worst > atol:
        raise RuntimeError(f"{path.name}: Colvars-style call differs from the eager model by {worst:.3g} (> {atol})")
    return worst
