"""charrnn: character-level RNN, GRU and LSTM language models in NumPy."""

__version__ = "0.1.0"
