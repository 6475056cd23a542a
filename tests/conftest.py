"""Shared test fixtures: the OpenMM platforms to test on."""

import pytest

from openmm_closure.platforms import available_platforms

# Reference and CPU always; CUDA/OpenCL too where this machine has them.
PLATFORMS = [p for p in available_platforms() if p in ("Reference", "CPU", "CUDA", "OpenCL")]


@pytest.fixture(params=PLATFORMS)
def platform_name(request):
    return request.param
