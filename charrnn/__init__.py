"""charrnn: character-level RNN, GRU and LSTM language models in NumPy.

    import charrnn
    model = charrnn.load("model.npz")
    print(model.sample(300, prime="ROMEO:", temperature=0.8, seed=1))
"""

__version__ = "0.1.0"

from .checkpoint import Checkpoint, ModelNotFound, ResumeState, describe  # noqa: E402
from .config import ModelConfig, TrainConfig  # noqa: E402
from .data import Corpus, Vocab, read_corpus  # noqa: E402
from .errors import (  # noqa: E402
    CharRNNError,
    CheckpointError,
    ConfigError,
    DataError,
    DivergenceError,
    VocabularyError,
)
from .evaluation import evaluate  # noqa: E402
from .model import CharRNN  # noqa: E402
from .training import train  # noqa: E402


def load(path="model.npz") -> CharRNN:
    """The model in a model file (its best-validation weights), ready to ``.sample()``."""
    from .checkpoint import load as _load

    return _load(path, resume=False).model


def save(model: CharRNN, path="model.npz") -> None:
    """Write a model (with its vocabulary) to a model file, atomically."""
    from .checkpoint import save as _save

    _save(path, model)


__all__ = [
    "CharRNN", "CharRNNError", "Checkpoint", "CheckpointError", "ConfigError", "Corpus",
    "DataError", "DivergenceError", "ModelConfig", "ModelNotFound", "ResumeState",
    "TrainConfig", "Vocab", "VocabularyError", "describe", "evaluate", "load", "read_corpus",
    "save", "train", "__version__",
]
