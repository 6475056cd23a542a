"""Bias a closure variable of a particles2d simulation through openmm-torch's TorchForce.

Exports a trained particles2d model (``openmm-closure train``) with a harmonic bias
E = 0.5 k (ẑ_c - target)² on closure component c (kJ/mol), adds the exported
``collective_variable.pt`` to the OpenMM System as a ``TorchForce``, and runs the
gradient flow, printing the bias energy and ẑ_c as it goes. Without ``--target`` the
target is the initial ẑ_c shifted by ``--shift``, so the bias pulls the closure variable
away from where the flow starts.

    python examples/torchforce_bias.py --model models/p2d --out exported/p2d --steps 100

The force constant and the target are openmm-torch global parameters, ``closure_k`` and
``closure_target`` (defaults from the export): halfway through, the script moves the
target back to the initial ẑ_c with ``context.setParameter`` (``--move-target``), with no
re-export. The same module works in any OpenMM script::

    from openmm_closure.couple.torchforce import closure_torch_force
    force = closure_torch_force("exported/p2d/collective_variable.pt")
    system.addForce(force)
    simulation.context.setParameter("closure_target", 0.3)
"""

import argparse

import numpy as np
import torch
from openmm import app, unit

from openmm_closure import load_model, systems
from openmm_closure.hosts.export import export_model
from openmm_closure.md.platforms import select_platform
from openmm_closure.couple.torchforce import closure_torch_force


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a trained particles2d model directory")
    p.add_argument("--out", required=True, help="export directory to write")
    p.add_argument("--component", type=int, default=0, help="biased closure component c")
    p.add_argument("--force-constant", type=float, default=100.0, help="k in kJ/mol")
    p.add_argument("--target", type=float, default=None, help="target of ẑ_c (default: initial + shift)")
    p.add_argument("--shift", type=float, default=0.2, help="target offset from the initial ẑ_c")
    p.add_argument("--n-particles", type=int, default=100)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--platform", default="auto", help="auto, CUDA, OpenCL, CPU or Reference")
    p.add_argument("--move-target", action="store_true",
                   help="halfway, set closure_target back to the initial zhat_c (context.setParameter)")
    args = p.parse_args()

    spec = systems.build("particles2d", n_particles=args.n_particles, steps=args.steps, seed=1)
    model = load_model(args.model)
    z_start = float(model.encode(spec.positions, spec.types)[args.component])
    target = z_start + args.shift if args.target is None else args.target
    paths = export_model(args.model, args.out, component=args.component,
                         force_constant=args.force_constant, target=target)

    force = closure_torch_force(paths["collective_variable"])  # globals closure_k, closure_target
    force.setForceGroup(1)  # to read the bias energy on its own
    spec.system.addForce(force)
    platform = select_platform(args.platform)
    simulation = app.Simulation(spec.topology, spec.system, spec.new_integrator(), platform)
    simulation.context.setPositions(spec.positions)
    cv = torch.jit.load(str(paths["collective_variable"]))  # ẑ_c for the printout

    print(f"platform {platform.getName()}, {spec.n_particles} particles, bias 0.5 * "
          f"{args.force_constant:g} * (zhat_{args.component} - {target:.4f})^2 kJ/mol")
    every = max(1, args.steps // 5)
    for done in range(0, args.steps + 1, every):
        if done:
            simulation.step(every)
        if args.move_target and done == every * (args.steps // every // 2):
            simulation.context.setParameter("closure_target", z_start)
            print(f"closure_target -> {z_start:.4f} (no re-export)")
        state = simulation.context.getState(getEnergy=True, getPositions=True, groups={1})
        pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        with torch.no_grad():
            zc = float(cv.collective_variable(torch.tensor(np.asarray(pos))))
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        print(f"step {done:6d}  zhat_{args.component} {zc: .5f}  bias energy {energy:.5g} kJ/mol")


if __name__ == "__main__":
    main()
