"""The models that come with charrnn, by short name: ``english``, a base to sample from and to
fine-tune (corpora/README.md, "The English base").

A short name works wherever a model file's path does: ``charrnn sample -m english``,
``--init-from english``, ``charrnn inspect english``, ``charrnn.load("english")``. A file of
that name in the working folder wins over the built-in model.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BUILT_IN", "FOLDER", "model_path"]

FOLDER = Path(__file__).resolve().parent / "models"
BUILT_IN = {"english": "english.npz"}  # short name -> file in FOLDER


def model_path(path: str | os.PathLike) -> str | os.PathLike:
    """``path``, or the built-in model's file where ``path`` is a short name and no file by
    that name exists."""
    name = os.fspath(path)
    if name in BUILT_IN and not os.path.lexists(name):
        return FOLDER / BUILT_IN[name]
    return path
