import numpy as np
import openmm
import openmm.unit
import pytest

from openmm_closure.md.platforms import PLATFORM_ORDER, available_platforms, platform_properties, select_platform


def test_auto_picks_fastest_available():
    available = available_platforms()
    assert "Reference" in available
    expected = next(name for name in PLATFORM_ORDER if name in available)
    assert select_platform("auto").getName() == expected
    assert select_platform().getName() == expected


def test_explicit_platform_is_case_insensitive():
    assert select_platform("reference").getName() == "Reference"


def test_unavailable_platform_lists_available_and_reason():
    missing = [p for p in ("CUDA", "OpenCL") if p not in available_platforms()]
    if not missing:
        pytest.skip("every GPU platform loaded here")
    with pytest.raises(ValueError) as err:
        select_platform(missing[0])
    msg = str(err.value)
    assert missing[0] in msg and "Reference" in msg and "platform" in msg
    if openmm.Platform.getPluginLoadFailures():
        assert "why it did not load" in msg


def test_unknown_platform_name():
    with pytest.raises(ValueError, match="unknown platform 'Quantum'"):
        select_platform("Quantum")


def _why_missing(name: str) -> str:
    failures = [f for f in openmm.Platform.getPluginLoadFailures() if name.lower() in f.lower()]
    return f"{name} platform not loaded here" + (f": {failures[0].splitlines()[0]}" if failures else "")


@pytest.mark.parametrize("name", ["Reference", "CPU", "CUDA", "OpenCL"])
def test_platform_properties_give_the_reference_energy(name):
    """Each platform with the properties we pass (mixed precision on GPUs) builds a Context
    whose energy and forces match the Reference platform's; GPU platforms are skipped,
    with the loader's reason, where they do not load."""
    if name not in available_platforms():
        pytest.skip(_why_missing(name))
    from openmm_closure.systems import build

    spec = build("particles2d", n_particles=64, steps=1, seed=3)
    platform = select_platform(name)
    props = platform_properties(platform)
    assert ("Precision" in props) == (name in ("CUDA", "OpenCL"))
    states = {}
    for pname, pprops in (("Reference", {}), (name, props)):
        ctx = openmm.Context(spec.system, openmm.VerletIntegrator(0.001), select_platform(pname), pprops)
        ctx.setPositions(spec.positions)
        if "Precision" in pprops:
            assert ctx.getPlatform().getPropertyValue(ctx, "Precision") == "mixed"
        states[pname] = ctx.getState(getEnergy=True, getForces=True)
        del ctx
    ref, got = states["Reference"], states[name]
    e_ref = ref.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    e_got = got.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    assert e_got == pytest.approx(e_ref, rel=1e-4, abs=1e-4)
    f_ref = np.asarray(ref.getForces(asNumpy=True).value_in_unit(openmm.unit.kilojoule_per_mole / openmm.unit.nanometer))
    f_got = np.asarray(got.getForces(asNumpy=True).value_in_unit(openmm.unit.kilojoule_per_mole / openmm.unit.nanometer))
    assert np.abs(f_ref).max() > 0
    np.testing.assert_allclose(f_got, f_ref, rtol=1e-3, atol=1e-3 * np.abs(f_ref).max())
