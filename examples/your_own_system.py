"""Your own system: from a plain OpenMM script to a trained closure model, and back into it.

A 3D periodic system none of the built-ins covers: a small cluster of solute particles
"A" dissolving in a Lennard-Jones solvent "S" under a MonteCarloBarostat. The script

1. registers its own observable (the solute's radius of gyration about its periodic
   centre) with ``openmm_closure.md.observables.register``;
2. runs replicas with plain ``openmm.app`` calls and a ``DatasetReporter`` on the solute
   (``atomSubset=``), each in two legs joined by ``append=True`` as after a restart;
3. ingests the files into a training and a test dataset (``openmm_closure.data.ingest``);
4. trains a closure model and the no-closure model, and evaluates both on the test set;
5. reports ẑ of the solute live (``ClosureReporter``, the box passed each frame);
6. hands over to the learned dynamics and lifts the solute back into its solvent
   (``ClosureSimulation(atomSubset=...)``), then MD resumes.

    python examples/your_own_system.py --out own_out                 # about 3 minutes on 2 cores
    python examples/your_own_system.py --out own_out --size small     # seconds: the test's size
"""

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

SIZES = {  # solvent lattice side, solute atoms, train/test replicas, MD steps, report interval, epochs
    "small": dict(side=4, solute=6, train=4, test=2, steps=80, interval=10, epochs=2),
    "default": dict(side=6, solute=10, train=12, test=4, steps=4000, interval=100, epochs=20),
}


def solute_rg(positions, box, types, species=0):
    """Radius of gyration (nm) of one species about its periodic centre (minimum image)."""
    x = positions[types == species]
    d = x - x[0]
    if box is not None:
        d -= np.round(d @ np.linalg.inv(box)) @ box
    d -= d.mean(0)
    return float(np.sqrt((d ** 2).sum(1).mean()))


def build(side, n_solute, platform, seed):
    """A periodic LJ solvent with the n_solute sites nearest the centre made solute."""
    import openmm
    from openmm import app, unit

    spacing = 0.38  # nm, a dense LJ liquid
    box = side * spacing
    g = (np.arange(side) + 0.5) * spacing
    pos = np.array([[x, y, z] for x in g for y in g for z in g])
    solute = np.argsort(np.linalg.norm(pos - box / 2, axis=1))[:n_solute]
    order = np.concatenate([np.sort(solute), np.setdiff1d(np.arange(len(pos)), solute)])
    pos = pos[order]  # solute first: atomSubset = 0 .. n_solute - 1
    top, system = app.Topology(), openmm.System()
    chain = top.addChain()
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    nb.setCutoffDistance(min(0.9, 0.49 * box))
    for i in range(len(pos)):
        name = "A" if i < n_solute else "S"
        top.addAtom(name, None, top.addResidue(name, chain))
        system.addParticle(39.9)
        nb.addParticle(0.0, 0.34, 0.4 if name == "A" else 0.99)  # A-A weak, A-S stronger: A dissolves
    vectors = [openmm.Vec3(box, 0, 0), openmm.Vec3(0, box, 0), openmm.Vec3(0, 0, box)]
    system.setDefaultPeriodicBoxVectors(*vectors)
    top.setPeriodicBoxVectors(vectors)
    system.addForce(nb)
    barostat = openmm.MonteCarloBarostat(400 * unit.bar, 120 * unit.kelvin, 10)
    barostat.setRandomNumberSeed(seed + 1)
    system.addForce(barostat)
    integrator = openmm.LangevinMiddleIntegrator(120 * unit.kelvin, 2 / unit.picosecond, 0.005 * unit.picosecond)
    integrator.setRandomNumberSeed(seed + 1)
    sim = app.Simulation(top, system, integrator, openmm.Platform.getPlatformByName(platform))
    sim.context.setPositions(pos)
    openmm.LocalEnergyMinimizer.minimize(sim.context, 1.0, 200)
    sim.context.setVelocitiesToTemperature(120 * unit.kelvin, seed + 1)
    return sim, list(range(n_solute))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--size", choices=sorted(SIZES), default="default", help="problem size")
    p.add_argument("--platform", default="CPU", help="OpenMM platform: CPU, Reference, CUDA or OpenCL")
    args = p.parse_args(argv)
    s = SIZES[args.size]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from openmm_closure.md import observables
    from openmm_closure.data import ingest, load
    from openmm_closure.evaluate.evaluation import evaluate
    from openmm_closure.couple.handover import ClosureSimulation
    from openmm_closure.reporters import ClosureReporter, DatasetReporter
    from openmm_closure.learn.training import TrainConfig, train

    observables.register("solute_rg", solute_rg, units="nanometers", species=0, replace=True)

    # 1-2. replicas with reporters, each run in two legs (a restart appends to its file)
    files = []
    for r in range(s["train"] + s["test"]):
        sim, solute = build(s["side"], s["solute"], args.platform, seed=r)
        path = out / f"replica_{r}.h5"
        for leg, steps in enumerate((s["steps"] // 2, s["steps"] - s["steps"] // 2)):
            rep = DatasetReporter(path, s["interval"], observables=("solute_rg",), atomSubset=solute,
                                  overwrite=leg == 0, append=leg == 1)
            sim.reporters = [rep]
            if leg == 0:
                rep.report(sim, sim.context.getState(getPositions=True))  # frame 0: the cluster
            sim.step(steps)
            rep.close()
        files.append(path)
    # 3. ingest: one dataset for training, one for testing
    train_ds = ingest(files[: s["train"]], out / "train", regimes="dissolving", seeds=range(s["train"]),
                      overwrite=True)
    test_ds = ingest(files[s["train"]:], out / "test", regimes="dissolving",
                     seeds=range(s["train"], len(files)), overwrite=True)
    print(f"ingested: {load(train_ds)!r} and {load(test_ds)!r}")

    # 4. train the closure model and the no-closure model; evaluate both
    common = dict(data=str(train_ds), epochs_stage1=s["epochs"], epochs_stage2=s["epochs"], samples=32,
                  batch_size=8, progress=False, device="cpu", seed=0)
    if args.size == "small":
        common.update(flow_transforms=1, flow_hidden=(16, 16), dynamics_hidden=(16, 16), encoder_hidden=(16,),
                      encoder_embed=8, samples=16)
    for name in ("model", "no_closure"):
        shutil.rmtree(out / name, ignore_errors=True)  # train from scratch on every run
    train(TrainConfig(out=str(out / "model"), **common))
    train(TrainConfig(out=str(out / "no_closure"), method="no-closure", **common))
    res = evaluate(out / "model", test_ds, out / "eval", samples=8, no_closure=out / "no_closure",
                   overwrite=True, plots=False)
    nc = res["calibration"]["no-closure"]["value"]
    print(f"test {res['metric']} of solute_rg: closure {res['value']:.4g}, no-closure {nc:.4g}")
    (out / "metrics.json").write_text(json.dumps({"closure": res["value"], "no_closure": nc}, indent=1))

    # 5-6. a new run: ẑ of the solute live, then the hand-over and the way back
    sim, solute = build(s["side"], s["solute"], args.platform, seed=1000)
    live = ClosureReporter(out / "closure.csv", s["interval"], out / "model", atomSubset=solute, overwrite=True)
    sim.reporters = [live]
    cs = ClosureSimulation(sim, out / "model", file=out / "timeline.csv", reportInterval=s["interval"],
                           atomSubset=solute, overwrite=True)
    cs.step(s["steps"] // 2)
    result = cs.extrapolate(steps=10, samples=8, seed=0)
    print(f"surrogate: {result.samples.shape[0]} members, solute_rg {result.mean[-1, 0]:.3f} "
          f"± {result.std[-1, 0]:.3f} nm after {result.times[-1]:g} ps")
    lifted = cs.lift(member=0, seed=0, on_mismatch="warn")
    print(f"lifted: solute_rg {lifted.observables[0]:.3f} nm for the target {lifted.target[0]:.3f} nm")
    cs.step(s["steps"] // 2)
    cs.close()
    live.close()
    rows = np.genfromtxt(out / "closure.csv", delimiter=",", names=True)
    print(f"live ẑ: {len(rows)} rows in {out / 'closure.csv'}")


if __name__ == "__main__":
    main()
