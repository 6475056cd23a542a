"""The OpenMM side: integrators, platforms, observables, and ensembles of replicas
simulated into a dataset. Imports openmm and numpy, never torch.

A namespace only: it imports nothing, so that importing one module of it loads
none of the others.
"""
