"""Attach openmm-closure's reporters to a plain OpenMM script.

A small A/B Lennard-Jones mixture in a periodic box, built with nothing but openmm.app
calls and the shipped ForceField file, starting from a left-A / right-B slab; the
reporters write the mixing ratios (CSV, minimum image) and an mdtraj-readable dataset
(HDF5) while it mixes.

    python examples/attach_reporters.py
"""

import numpy as np
import openmm
from openmm import app, unit

from openmm_closure.reporters import DatasetReporter, MacroReporter

# 11.2 nm cubic periodic box, 8 x 8 x 4 lattice, left half A, right half B
spacing, box = 1.4, 11.2
xyz = np.array([(i, j, k) for k in range(4) for j in range(8) for i in range(8)]) * spacing + 0.7
xyz[:, 2] *= 2.0  # spread the layers over the box height
topology = app.Topology()
chain = topology.addChain()
topology.setPeriodicBoxVectors(np.eye(3) * box * unit.nanometer)
for x in xyz[:, 0]:
    name = "A" if x < box / 2 else "B"
    residue = topology.addResidue(name, chain)
    topology.addAtom(name, app.Element.getBySymbol("Ar" if name == "A" else "Kr"), residue)

forcefield = app.ForceField("lj_binary_mixture.xml")  # found through the entry point
system = forcefield.createSystem(topology, nonbondedMethod=app.CutoffPeriodic, nonbondedCutoff=2.5 * unit.nanometer)
integrator = openmm.LangevinMiddleIntegrator(120.27 * unit.kelvin, 1.0 / unit.picosecond, 0.002 * unit.picosecond)
simulation = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName("CPU"))
simulation.context.setPositions(xyz)
simulation.context.setVelocitiesToTemperature(120.27 * unit.kelvin, 1)

simulation.reporters.append(MacroReporter("macro.csv", 200, observables=("R_AB", "R_BA")))
simulation.reporters.append(DatasetReporter("trajectory.h5", 200, observables=("R_AB", "R_BA")))
simulation.step(2000)
for reporter in simulation.reporters:
    reporter.close()

import mdtraj  # noqa: E402

traj = mdtraj.load("trajectory.h5")
print(f"trajectory.h5: {traj.n_frames} frames, {traj.n_atoms} atoms; macro.csv:")
print(open("macro.csv").read())
