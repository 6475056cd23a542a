"""Shared test fixtures: the OpenMM platforms to test on."""

import pytest

from openmm_closure.platforms import available_platforms

# Reference and CPU always; CUDA/OpenCL too where this machine has them.
PLATFORMS = [p for p in available_platforms() if p in ("Reference", "CPU", "CUDA", "OpenCL")]


@pytest.fixture(params=PLATFORMS)
def platform_name(request):
    return request.param


def potential_energy(system, positions, parameters=None):
    """Potential energy (kJ/mol) of ``system`` at ``positions`` on the Reference platform."""
    import openmm

    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    for name, value in (parameters or {}).items():
        ctx.setParameter(name, value)
    ctx.setPositions(positions)
    return ctx.getState(getEnergy=True).getPotentialEnergy()._value
