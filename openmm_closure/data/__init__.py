"""Datasets of simulated replicas: the on-disk format, a writer, and lazy loading.

A dataset is a directory holding ``manifest.json`` and one HDF5 file per replica,
``replica_00000.h5``, ``replica_00001.h5``, ... Each replica file is an mdtraj HDF5
trajectory (``mdtraj.load(path)`` reads it: coordinates in nm, time in ps, a topology
whose atom names are the species names) with extra nodes:

- ``/species``: (n,) int64 species index of each particle (0 = first species name in
  sorted order), attribute ``names`` (JSON list of species names);
- ``/observables/<name>``: (F,) float64 per-frame observable, attribute ``units``.

The package imports only numpy at module level (tables and mdtraj inside functions) and
never imports torch or openmm. Its rooms: :mod:`.format` (version, file names, units),
:mod:`.manifest` (the one manifest builder, read/write), :mod:`.writer`
(:class:`ReplicaWriter`, :func:`save`), :mod:`.reader` (lazy :class:`Dataset`,
:class:`ArrayDataset`, :func:`load`), :mod:`.validation` (:func:`check_dataset`),
:mod:`.configuration` (one configuration or a types file, as the CLI reads them) and
:mod:`.subset` (the first ``n`` replicas as a dataset: nested training sets) and
:mod:`.ingestion` (a dataset from reporter files of any origin).

Example:
    >>> import numpy as np
    >>> from openmm_closure.data import ArrayDataset, load
    >>> pos = np.random.rand(2, 5, 10, 3).astype(np.float32)     # (R, F, n, 3) nm
    >>> ds = ArrayDataset(pos, np.zeros(10, dtype=np.int64), np.arange(5) * 0.02,
    ...                   {"energy": np.zeros((2, 5))}, {"system": "particles2d"})
    >>> ds.save("example_ds")                                     # doctest: +SKIP
    >>> load("example_ds").positions[1].shape                     # doctest: +SKIP
    (5, 10, 3)
"""

from .configuration import Configuration, read_configuration, read_types
from .format import (
    FORMAT_VERSION,
    MANIFEST,
    OBSERVABLE_UNITS,
    partial_filename,
    replica_filename,
    software_versions,
    species_names_for,
)
from .manifest import (
    REPLICA_META_ATTR,
    build_manifest,
    complete_manifest,
    normalise,
    read_manifest,
    replica_meta,
    write_manifest,
)
from .reader import ArrayDataset, Dataset, Replica, fingerprint, load, read_replica, replica_hashes
from .replica import replica_lengths
from .ingestion import ingest
from .subset import subset_dataset
from .validation import check_dataset
from .writer import ReplicaWriter, save

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "OBSERVABLE_UNITS",
    "Replica",
    "Dataset",
    "ArrayDataset",
    "ReplicaWriter",
    "load",
    "save",
    "read_replica",
    "replica_lengths",
    "ingest",
    "replica_filename",
    "partial_filename",
    "read_manifest",
    "write_manifest",
    "software_versions",
    "species_names_for",
    "fingerprint",
    "replica_hashes",
    "check_dataset",
    "subset_dataset",
    "read_types",
    "Configuration",
    "read_configuration",
    "build_manifest",
    "complete_manifest",
    "replica_meta",
    "REPLICA_META_ATTR",
    "normalise",
]
