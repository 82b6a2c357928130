"""Artifact folders: a saved model loads back identical; a changed, missing or extra file is refused by name."""
import json

import numpy as np
import pytest

from mlcore import dataset, registry
from mlcore.errors import ArtifactError
from mlcore.training import train_family
from tests.mlcore.synth import synth_frames


@pytest.fixture(scope="module")
def rows():
    events, customers = synth_frames(200, 420, seed=3)
    return dataset.training_rows(events, customers, as_of=events["occurred_at"].max(), horizon_days=90)


@pytest.fixture(scope="module")
def trained(rows):
    train, valid = rows
    return train_family("logreg", train, valid)


def test_saved_model_loads_back_with_the_same_probabilities(trained, rows, tmp_path):
    manifest = registry.save_trained(trained, tmp_path / "v1")
    assert {"calibration.json", "schema.json", "metrics.json"} <= set(manifest["files"])
    assert json.loads((tmp_path / "v1" / "manifest.json").read_text()) == manifest
    loaded = registry.load_trained(tmp_path / "v1", manifest)
    _, valid = rows
    np.testing.assert_allclose(loaded.predict_proba(valid), trained.predict_proba(valid))
    assert loaded.family == "logreg"


def test_a_changed_file_is_refused_naming_it(trained, tmp_path):
    manifest = registry.save_trained(trained, tmp_path / "v1")
    path = tmp_path / "v1" / "calibration.json"
    path.write_text(path.read_text().replace("platt", "plat "))
    with pytest.raises(ArtifactError, match=r"'calibration.json' fails its checksum"):
        registry.load_trained(tmp_path / "v1", manifest)


def test_a_missing_or_extra_file_is_refused(trained, tmp_path):
    manifest = registry.save_trained(trained, tmp_path / "v1")
    (tmp_path / "v1" / "notes.txt").write_text("not part of the model")
    with pytest.raises(ArtifactError, match=r"'notes.txt' is not in the manifest"):
        registry.load_trained(tmp_path / "v1", manifest)
    (tmp_path / "v1" / "notes.txt").unlink()
    (tmp_path / "v1" / "schema.json").unlink()
    with pytest.raises(ArtifactError, match=r"'schema.json' is missing"):
        registry.load_trained(tmp_path / "v1", manifest)


def test_no_manifest_no_load(trained, tmp_path):
    registry.save_trained(trained, tmp_path / "v1")
    with pytest.raises(ArtifactError, match="no manifest"):
        registry.load_trained(tmp_path / "v1", {})
