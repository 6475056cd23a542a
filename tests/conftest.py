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


@pytest.fixture
def one_torch_thread():
    """One torch thread: the model tests use small ops, and shared CI cores must not be
    oversubscribed (two threads made them several times slower there)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
