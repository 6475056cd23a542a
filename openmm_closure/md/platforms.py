"""Choosing an OpenMM platform.

``select_platform("auto")`` picks the fastest platform this machine can run:
CUDA > OpenCL > CPU > Reference. GPU platforms are set to mixed precision.
"""

from __future__ import annotations

__all__ = ["PLATFORM_ORDER", "available_platforms", "select_platform", "platform_properties"]

PLATFORM_ORDER = ("CUDA", "OpenCL", "CPU", "Reference")


def available_platforms() -> list[str]:
    """Names of the OpenMM platforms that loaded on this machine, fastest first."""
    import openmm

    names = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    return [name for name in PLATFORM_ORDER if name in names] + sorted(names - set(PLATFORM_ORDER))


def _load_failures(name: str) -> list[str]:
    import openmm

    failures = openmm.Platform.getPluginLoadFailures()
    return [f for f in failures if name.lower() in f.lower()]


def select_platform(name: str = "auto"):
    """Return an ``openmm.Platform``.

    Arguments:
        name: ``"auto"`` (CUDA > OpenCL > CPU > Reference) or a platform name,
            case-insensitive.

    Returns:
        The ``openmm.Platform`` object.

    Raises:
        ValueError: the requested platform is unknown or did not load here; the message
            lists the platforms that did load and OpenMM's plugin load failures for it.

    Example:
        >>> select_platform("Reference").getName()
        'Reference'
    """
    import openmm

    if not isinstance(name, str):
        raise ValueError(f"platform must be a string, got {type(name).__name__}")
    available = available_platforms()
    if name.lower() == "auto":
        return openmm.Platform.getPlatformByName(available[0])
    match = [p for p in available if p.lower() == name.lower()]
    if match:
        return openmm.Platform.getPlatformByName(match[0])
    known = {p.lower() for p in PLATFORM_ORDER}
    if name.lower() not in known:
        raise ValueError(
            f"platform: unknown platform {name!r}; choose 'auto' or one of {list(PLATFORM_ORDER)}"
        )
    why = _load_failures(name)
    reason = ("; why it did not load: " + " | ".join(why)) if why else ""
    raise ValueError(
        f"platform: {name!r} is not available on this machine; available: {available}{reason}"
    )


def platform_properties(platform, deterministic: bool = False) -> dict[str, str]:
    """Properties to pass to ``Context``/``Simulation``: mixed precision on GPUs.

    Arguments:
        platform: an ``openmm.Platform``.
        deterministic: ask for bitwise-reproducible runs where the platform can give them:
            ``DeterministicForces`` on CPU and CUDA, and one thread on CPU (custom forces
            are otherwise summed over threads in a varying order). Reference is
            deterministic anyway; OpenCL has no such switch.

    Returns:
        dict property name -> value.
    """
    props: dict[str, str] = {}
    name = platform.getName()
    if name in ("CUDA", "OpenCL"):
        props["Precision"] = "mixed"
    if deterministic and "DeterministicForces" in platform.getPropertyNames():
        props["DeterministicForces"] = "true"
    if deterministic and name == "CPU":
        # OpenMM 8.6's CPU kernels for Custom*Forces still add per-thread results in a
        # varying order even with DeterministicForces; one thread makes them bitwise
        # reproducible (parallelise over replicas with worker processes instead)
        props["Threads"] = "1"
    return props
