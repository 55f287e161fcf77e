"""A model's own corpus, found again, and the validation text training held out of it.

A model file records its corpus by name, size and sha256, not by path. The corpus counts as
found when a file of that name, in one of ``corpus_folders``, has exactly the recorded size
and sha256 and decodes (as UTF-8) to the recorded number of characters. Only a corpus of one
file can be found: the name of a corpus of several files or of standard input is no file name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .data import Corpus, read_corpus, split_train_val
from .errors import CharRNNError

__all__ = ["corpus_folders", "find_corpus", "validation_text"]


def corpus_folders(model_path: str | Path) -> list[Path]:
    """Where a model's corpus is looked for, in order: the model file's folder, the current
    folder, and its ``corpora`` folder (where the README's commands keep the texts); as
    given (relative paths stay relative, so that they read well), each folder once."""
    out, seen = [], set()
    for folder in (Path(model_path).parent, Path("."), Path("corpora")):
        if os.path.realpath(folder) not in seen:
            seen.add(os.path.realpath(folder))
            out.append(folder)
    return out


def _plain_name(name: Any) -> bool:
    """Whether a recorded corpus name is one file name: no folder, nothing to climb out of."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "\0" not in name
            and Path(name).name == name and "/" not in name and "\\" not in name)


def find_corpus(record: dict[str, Any] | None, folders: list[Path]
                ) -> tuple[Path, Corpus] | None:
    """The first file in ``folders`` that is the recorded corpus (see the module's rule),
    and the corpus read from it; None when none is."""
    if not record or not _plain_name(record.get("name")):
        return None
    for folder in folders:
        path = folder / record["name"]
        try:
            if not path.is_file() or path.stat().st_size != record.get("size"):
                continue  # the size first: cheap, and a different file hardly ever shares it
            corpus = read_corpus([path])
        except (OSError, CharRNNError):  # unreadable, or not UTF-8 text: not this corpus
            continue
        if corpus.sha256 == record.get("sha256") and len(corpus) == record.get("chars"):
            return path, corpus
    return None


def validation_text(corpus: Corpus, val_frac: float, max_chars: int) -> str:
    """The first ``max_chars`` characters of the validation text that training holds out of
    ``corpus`` with this ``val_frac`` (its last round(n * val_frac) characters; empty when
    val_frac is 0)."""
    _, val = split_train_val(corpus.ids, val_frac)
    return corpus.vocab.decode(val[:max_chars])
