"""A plugin of openmm-closure, registered only through its entry points
(``closure_trap-0.1.dist-info/entry_points.txt``):

- the system ``trap2d``: n particles in a 2D harmonic trap, overdamped Langevin
  (Brownian) dynamics written as an OpenMM ``CustomIntegrator`` (z frozen), observed
  through the package's ``energy`` observable (mean pair energy);
- the observable ``trap_radius`` (numpy only);
- the dynamics kind ``damped``: a linear ODE dz/dt = -softplus(γ) ⊙ z + A z + b, RK4 steps
  through the package's one rollout loop.
"""
