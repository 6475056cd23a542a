"""ForceField XML files shipped with openmm-closure.

Registered with OpenMM's ``openmm.forcefielddir`` entry point, so any script can write
``ForceField("lj_binary_mixture.xml")`` once the package is installed.
"""

import os

__all__ = ["get_data_dir"]


def get_data_dir() -> str:
    """Return the folder holding this package's ForceField XML files."""
    return os.path.dirname(os.path.abspath(__file__))
