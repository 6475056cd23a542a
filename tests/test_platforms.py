import openmm
import pytest

from openmm_closure.platforms import PLATFORM_ORDER, available_platforms, platform_properties, select_platform


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


def test_mixed_precision_only_on_gpu():
    assert platform_properties(select_platform("Reference")) == {}
