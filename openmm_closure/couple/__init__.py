"""The learned model inside OpenMM runs: the surrogate integrator, the hand-over from
MD and back (lift, guard), the compiled rollout engine, and closure forces through
openmm-torch's TorchForce or ``openmm.PythonForce``.

A namespace only: it imports nothing, so that importing one module of it loads
none of the others.
"""
