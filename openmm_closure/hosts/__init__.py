"""Exported closure models for the C++ hosts MD users already run.

The TorchScript files themselves come from :mod:`.export` (saved with their metadata by
:mod:`.scripting`); one module a host, each following that host's own calling code:

- :mod:`.plumed`: PLUMED ``PYTORCH_MODEL`` (``src/pytorch/PytorchModel.cpp`` in plumed2).
- :mod:`.gromacs`: GROMACS' Colvars module, ``torchANN`` component
  (``src/external/colvars/colvarcomp_torchann.cpp``); NNPot is refused (it replaces the
  input group's force field).
- :mod:`.cv`: closure variables as OpenMM collective variables (``export --cv``).
- :mod:`.pt2`: ``torch.export`` + AOTInductor packages (``.pt2``) for
  ``torch::inductor::AOTIModelPackageLoader``.

:func:`openmm_closure.hosts.profiles.write_hosts` writes the files of the asked
profiles into an export directory and validates each one by loading it back and calling
it the way its host does.
"""

from .profiles import FORMATS, HOST_FILES, HOSTS, write_hosts

__all__ = ["HOSTS", "FORMATS", "HOST_FILES", "write_hosts"]
