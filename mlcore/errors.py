"""Errors mlcore raises; the Django layer turns them into CrmError with the same message."""
from __future__ import annotations


class MlError(Exception):
    """An expected failure in training or scoring, with a message a user can act on."""


class NotEnoughData(MlError, ValueError):
    """Too few labelled customers or churners, or an as_of outside the data's range."""


class ArtifactError(MlError):
    """A model artifact is missing, unreadable or fails its checksum."""
