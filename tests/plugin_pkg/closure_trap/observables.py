"""The plugin's observable ``trap_radius``: the mean distance of the particles from the
trap's centre, nm. numpy only: the OpenMM side loads it without torch."""

import numpy as np

from openmm_closure.md.observables import Observable


def trap_radius(positions, box, types, centre_x=0.0, centre_y=0.0):
    """Mean distance in the xy plane from (centre_x, centre_y), nm."""
    d = positions[:, :2] - np.array([centre_x, centre_y])
    return float(np.sqrt((d ** 2).sum(axis=1)).mean())


TRAP_RADIUS = Observable(fn=trap_radius, units="nanometers", defaults={"centre_x": 0.0, "centre_y": 0.0})
