"""Versions and input contracts in every export's metadata, and ``openmm-closure info`` on each
kind of path: what it is, that it checks, and one line for a truncated or edited file."""

import json
import zipfile

import numpy as np
import openmm
import pytest
import torch
from conftest import train_tiny_model

import openmm_closure
from openmm_closure.cli import main
from openmm_closure.hosts.export import export_model, read_metadata
from openmm_closure.info import describe, format_info

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    from openmm_closure.md.simulate import simulate_ensemble

    base = tmp_path_factory.mktemp("info")
    model = train_tiny_model(base / "model", "particles2d")
    export_model(model, base / "export", cv=True, hosts=["plumed", "gromacs"])
    data = simulate_ensemble("particles2d", base / "data", 2, seed=1, platform="CPU", progress=False,
                             n_particles=8, steps=4, report_interval=2)
    return {"model": model, "export": base / "export", "data": data}


def _info(capsys, path):
    rc = main(["info", str(path)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err.strip()


def test_every_export_records_versions_and_its_inputs(paths):
    want = {"torch": torch.__version__, "libtorch_cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
            "openmm": openmm.__version__, "openmm_closure": openmm_closure.__version__}
    pts = sorted(paths["export"].glob("*.pt"))
    assert {p.name for p in pts} >= {"encoder.pt", "dynamics.pt", "collective_variable.pt", "closure_cv_0.pt",
                                     "plumed_model.pt", "colvars_model.pt"}
    for p in pts:
        meta = read_metadata(p)
        assert {k: meta["versions"][k] for k in want} == want, p.name
        assert meta["inputs"] and meta["outputs"], p.name
        assert json.loads(p.with_suffix(".json").read_text())["versions"] == meta["versions"]
    enc = read_metadata(paths["export"] / "encoder.pt")
    assert [(a["name"], a["shape"], a["dtype"]) for a in enc["inputs"]] == \
        [("positions", ["n", 3], "float32|float64"), ("types", ["n"], "int64")]


@pytest.mark.parametrize("key,kind", [("model", "model directory"), ("export", "export directory"),
                                      ("data", "dataset")])
def test_info_on_directories(paths, capsys, key, kind):
    rc, out, err = _info(capsys, paths[key])
    assert rc == 0 and err == ""
    lines = dict(ln.split(": ", 1) for ln in out.splitlines() if not ln.startswith(("ok:", "warning:")))
    assert lines["kind"] == kind and lines["system"] == "particles2d"
    assert lines["species"] == ("P" if key == "data" else "0")  # the tiny model's data names no species
    assert len(lines["content_sha256"]) == 64 and "ok: " in out
    if key == "export":
        assert "closure_cv_0.pt closure_cv" in lines["files"] and "torch " + torch.__version__ in lines["versions"]
    if key == "data":
        assert lines["n_particles"] == "8" and "replicas 2" in lines["dims"]
    if key == "model":
        assert "latent_dim 2" in lines["dims"]


def test_info_on_one_exported_file(paths, capsys, tmp_path):
    rc, out, _ = _info(capsys, paths["export"] / "closure_cv_1.pt")
    assert rc == 0
    assert "kind: exported file (closure_cv)" in out and "component 1" in out and "n_particles: any" in out
    assert "ok: code and weights match the digest in its metadata" in out and "ok: matches export.json" in out
    assert "inputs: positions ['N', 3] float32|float64" in out
    # copied out on its own (no index, no JSON beside): still checked by its digest
    (tmp_path / "cv.pt").write_bytes((paths["export"] / "closure_cv_1.pt").read_bytes())
    info = describe(tmp_path / "cv.pt")
    assert info["checks"] == ["TorchScript archive loads", "code and weights match the digest in its metadata"]
    assert info["warnings"] == []


def _rezip_with_flipped_weight(src, dst):
    """A well-formed archive (valid CRCs) with one weight byte changed: only the digest sees it."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as out:
        big = max((i for i in z.infolist() if "/data/" in i.filename and "serialization" not in i.filename),
                  key=lambda i: i.file_size)
        for i in z.infolist():
            b = z.read(i)
            out.writestr(i, bytes([b[0] ^ 1]) + b[1:] if i.filename == big.filename else b)


def test_damaged_files_get_one_line(paths, capsys, tmp_path):
    src = (paths["export"] / "encoder.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(src[: len(src) // 2])
    _rezip_with_flipped_weight(paths["export"] / "encoder.pt", tmp_path / "edited.pt")
    (tmp_path / "b.pt").write_bytes(src)
    meta = json.loads((paths["export"] / "encoder.json").read_text())
    (tmp_path / "b.json").write_text(json.dumps({**meta, "latent_dim": 7}))
    cases = [(tmp_path / "trunc.pt", "truncated or damaged"), (tmp_path / "edited.pt", "edited after export"),
             (tmp_path / "b.pt", "b.json: differs from the metadata inside b.pt"),
             (tmp_path / "nothing.txt", "does not exist")]
    for path, needle in cases:
        rc, out, err = _info(capsys, path)
        assert rc != 0 and out == "" and err.count("\n") == 0 and needle in err, err
    # inside an export directory: the index sees an appended byte
    import shutil

    shutil.copytree(paths["export"], tmp_path / "x")
    with open(tmp_path / "x" / "dynamics.pt", "ab") as f:
        f.write(b"\0")
    for path in (tmp_path / "x", tmp_path / "x" / "dynamics.pt"):
        rc, _, err = _info(capsys, path)
        assert rc != 0 and err.count("\n") == 0 and "dynamics.pt" in err, err
    # a model directory whose weights were truncated
    shutil.copytree(paths["model"], tmp_path / "m")
    w = (tmp_path / "m" / "model.pt").read_bytes()
    (tmp_path / "m" / "model.pt").write_bytes(w[:100])
    rc, _, err = _info(capsys, tmp_path / "m")
    assert rc != 0 and err.count("\n") == 0 and "model.pt" in err, err


def test_version_mismatch_is_a_warning(paths, tmp_path):
    """A file exported under another torch/libtorch ABI says so (C++ hosts need the same)."""
    from openmm_closure.hosts.export import ExportedEncoder
    from openmm_closure.learn.model import load_model
    from openmm_closure.hosts.scripting import save_script

    model = load_model(paths["model"])
    meta = read_metadata(paths["export"] / "encoder.pt")
    old = {**meta["versions"], "torch": "1.8.2", "libtorch_cxx11_abi": not meta["versions"]["libtorch_cxx11_abi"]}
    other = {k: v for k, v in meta.items() if k not in ("versions", "records_sha256")}
    save_script(ExportedEncoder(model.encoder), tmp_path / "old.pt", {**other, "versions": old})
    text = format_info(describe(tmp_path / "old.pt"))
    assert f"warning: torch: exported with 1.8.2, this environment has {torch.__version__}" in text
    assert "warning: libtorch_cxx11_abi: exported with" in text


def test_info_json_output(paths, capsys):
    assert main(["info", str(paths["export"] / "closure_cv_0.pt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "exported file (closure_cv)" and info["dims"]["component"] == 0
    assert np.isclose(len(info["content_sha256"]), 64)
