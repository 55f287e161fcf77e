"""The command line: parse options into configs, call one library function, render the result.

One module per command; each registers itself on the ``charrnn`` group (``main``) when imported.
"""

from . import evaluate, inspect, sample, train  # noqa: F401  (registers the commands)
from .common import main

__all__ = ["main"]
