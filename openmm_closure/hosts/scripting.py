"""Saving TorchScript modules with their metadata inside and beside them.

One helper that :mod:`openmm_closure.hosts.export` and the host profiles of
:mod:`openmm_closure.hosts` share: the file is scripted, saved with its metadata in
``_extra_files`` (:data:`METADATA`), loaded back to check the round trip, and written
atomically with a JSON copy of the metadata beside it. The metadata gets the versions,
the input contract and the records' digest of :mod:`openmm_closure.provenance`.
"""

import io
import json
from pathlib import Path

import torch
from torch import nn

from ..fileio import atomic_write_bytes

__all__ = ["METADATA", "save_script"]

#: name of the metadata entry inside every exported TorchScript file
METADATA = "metadata.json"


def save_script(module: nn.Module, path: Path, metadata: dict) -> None:
    """Script ``module``, check the save/load round trip, write .pt and .json atomically.

    Arguments:
        module: the module to compile with ``torch.jit.script`` (set to eval, parameters
            frozen: inference only, autograd tracks the inputs alone).
        path: the ``.pt`` file; the metadata also goes to ``path`` with suffix ``.json``.
        metadata: JSON-able dict stored inside the file (``_extra_files``) and beside it.

    Raises:
        RuntimeError: TorchScript cannot compile the module, or the metadata did not
            survive the round trip.
    """
    from ..provenance import DIGEST_KEY, records_digest, stamp

    metadata = stamp(metadata)  # versions and the input contract of its kind
    module = module.eval()
    for param in module.parameters():  # inference only: autograd tracks the inputs alone
        param.requires_grad_(False)
    try:
        scripted = torch.jit.script(module)
    except Exception as exc:  # a model whose modules TorchScript cannot compile
        raise RuntimeError(f"cannot compile {path.name} to TorchScript: {str(exc).splitlines()[0]}") from exc
    buf = io.BytesIO()  # a first save gives the records' digest, which goes into the metadata
    torch.jit.save(scripted, buf, _extra_files={METADATA: "{}"})
    metadata = {**metadata, DIGEST_KEY: records_digest(buf.getvalue())}
    text = json.dumps(metadata, indent=2, sort_keys=True) + "\n"
    buf = io.BytesIO()
    torch.jit.save(scripted, buf, _extra_files={METADATA: text})
    data = buf.getvalue()
    if records_digest(data) != metadata[DIGEST_KEY]:
        raise RuntimeError(f"{path.name}: the TorchScript records changed between two saves")
    extra = {METADATA: ""}
    torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=extra)
    if json.loads(extra[METADATA]) != json.loads(text):
        raise RuntimeError(f"{path.name}: metadata did not survive the save/load round trip")
    atomic_write_bytes(path, data)
    atomic_write_bytes(path.with_suffix(".json"), text.encode())
