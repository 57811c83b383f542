"""oras (an independent OCI client) as the oracle: it reads what phaita pushed, phaita reads what it pushed."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from oci_fixtures import MODEL, snapshot_bytes
from phaita.loader import prefetch_model, robust_model_download
from phaita.loader.oci.push import Pusher

oras_client = pytest.importorskip("oras.client", reason="oras (PyPI) is the oracle: pip install oras")


def _oras(registry):
    return oras_client.OrasClient(hostname=registry.host, insecure=True)


def test_oras_pulls_what_phaita_pushed_byte_for_byte_with_modelpack_media_types(registry, cached_model, tmp_path):
    result = Pusher(Path(cached_model).parents[2]).push(MODEL, "main", f"oci://{registry.host}/models")
    target = f"{registry.host}/models/{MODEL}:main"
    client = _oras(registry)
    manifest = client.get_manifest(target)
    assert manifest["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    kinds = {l["annotations"]["org.cncf.model.filepath"]: l["mediaType"] for l in manifest["layers"]}
    assert kinds["model.safetensors"] == "application/vnd.cncf.model.weight.v1.raw"
    assert kinds["config.json"] == "application/vnd.cncf.model.weight.config.v1.raw"
    assert manifest["annotations"]["org.opencontainers.image.revision"] == result.commit
    out = tmp_path / "oras-out"
    client.pull(target=target, outdir=str(out))
    # oras names each file by its title annotation; phaita writes the path as filepath: compare by path
    pulled = {}
    for layer in manifest["layers"]:
        name = layer["annotations"]["org.cncf.model.filepath"]
        pulled[name] = (out / name).read_bytes()
    assert pulled == snapshot_bytes(Path(cached_model))


def _publish_with_oras(registry, folder: Path, target: str, files: list[str], config: dict, monkeypatch) -> None:
    (folder / "modelpack-config.json").write_text(json.dumps(config))
    with monkeypatch.context() as m:
        m.chdir(folder)  # oras titles each layer with the path as given
        _oras(registry).push(target=target, files=files, disable_path_validation=True,
                             manifest_config="modelpack-config.json:application/vnd.cncf.model.config.v1+json")


def _config(diff_ids: list[str]) -> dict:
    return {"descriptor": {"name": "tiny"}, "config": {"format": "safetensors"},
            "modelfs": {"type": "layers", "diffIds": diff_ids}}


def test_phaita_loads_a_modelpack_artifact_that_oras_pushed(registry, cached_model, fresh_cache, tmp_path,
                                                            monkeypatch):
    folder = tmp_path / "by-oras"
    folder.mkdir()
    files = []
    for name, data in snapshot_bytes(Path(cached_model)).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        kind = "weight" if name.endswith(".safetensors") else "weight.config"
        files.append(f"{name}:application/vnd.cncf.model.{kind}.v1.raw")
    _publish_with_oras(registry, folder, f"{registry.host}/other/tiny-bert:v1", files, _config([]), monkeypatch)
    model = robust_model_download(f"oci://{registry.host}/other/tiny-bert:v1", model_type="auto",
                                  max_retries=1, timeout=60)
    assert model.__class__.__name__.startswith("Bert")
    snap = next((fresh_cache / "models--other--tiny-bert" / "snapshots").iterdir())
    assert snapshot_bytes(snap) == snapshot_bytes(Path(cached_model))
    assert (fresh_cache / "models--other--tiny-bert" / "refs" / "v1").read_text() == snap.name


def test_phaita_reads_a_tar_layer_artifact(registry, cached_model, fresh_cache, tmp_path, monkeypatch):
    folder = tmp_path / "tarred"
    folder.mkdir()
    with tarfile.open(folder / "model.tar", "w") as tar:
        for name, data in sorted(snapshot_bytes(Path(cached_model)).items()):
            path = folder / "src" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            tar.add(path, arcname=name)
    _publish_with_oras(registry, folder, f"{registry.host}/tarred/tiny-bert:v1",
                       ["model.tar:application/vnd.cncf.model.weight.v1.tar"], _config([]), monkeypatch)
    path = Path(prefetch_model(f"oci://{registry.host}/tarred/tiny-bert:v1", max_retries=1, timeout=60))
    assert snapshot_bytes(path) == snapshot_bytes(Path(cached_model))
    assert not list(path.parents[1].joinpath("blobs").glob("*.incomplete"))
