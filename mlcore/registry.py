"""Model artifact folders: write a trained model with a sha256 manifest, verify and load it back.

Django-free: everything works on a local folder. The Django layer (crm_plugin.scoring.services)
copies the folder to and from the `models` storage and keeps the manifest in ModelVersion.
A file whose checksum does not match (or that is missing, or extra) is refused with an
ArtifactError naming the file, so a tampered or half-copied version never scores.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlcore.errors import ArtifactError
from mlcore.training import TrainedModel

MANIFEST = "manifest.json"
ARTIFACT_FORMAT = 1
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_files(folder: Path) -> list[str]:
    """Every file under `folder` except the manifest, as sorted POSIX relative paths."""
    folder = Path(folder)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p != folder / MANIFEST)


def build_manifest(folder: Path) -> dict:
    folder = Path(folder)
    return {"format": ARTIFACT_FORMAT, "files": {name: file_sha256(folder / name) for name in artifact_files(folder)}}


def verify(folder: Path, manifest: dict) -> None:
    """Raise ArtifactError naming the first file that is missing, unexpected or fails its checksum."""
    folder = Path(folder)
    expected = (manifest or {}).get("files")
    if not expected:
        raise ArtifactError(f"model artifact {folder} has no manifest: refusing to load it")
    for name, sha in sorted(expected.items()):
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"model artifact file {name!r} is missing from {folder}")
        actual = file_sha256(path)
        if actual != sha:
            raise ArtifactError(
                f"model artifact file {name!r} fails its checksum (expected sha256 {sha[:12]}..., got {actual[:12]}...): "
                "refusing to load this version"
            )
    extra = sorted(set(artifact_files(folder)) - set(expected))
    if extra:
        raise ArtifactError(f"model artifact file {extra[0]!r} is not in the manifest: refusing to load this version")


def write_manifest(folder: Path) -> dict:
    """Checksum every file of an artifact folder into its manifest.json; returns the manifest."""
    folder = Path(folder)
    manifest = build_manifest(folder)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def save_trained(trained: TrainedModel, folder: Path) -> dict:
    """Write the model (family files, calibration, schema, metrics), then the manifest; returns the manifest."""
    trained.save(Path(folder))
    return write_manifest(folder)


def load_trained(folder: Path, manifest: dict | None = None) -> TrainedModel:
    """Verify every file against `manifest` (default: the folder's own manifest.json), then load."""
    folder = Path(folder)
    if manifest is None:
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"model artifact file {MANIFEST!r} in {folder} is unreadable: {exc}") from exc
    verify(folder, manifest)
    return TrainedModel.load(folder)
