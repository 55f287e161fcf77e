"""Everything rich: the training view (live bar or plain log lines), tables and colored text.

The only part of charrnn that imports rich. All of it goes to stderr except what a command
produces as its result (``eval_lines``).

    base           the console (silent when its reader leaves), safe text, number formats
    training_view  the live bar / log lines of ``train``, its start and end summaries
    inspect_view   ``inspect``: file, parameters, loss chart, diagnostics, vocabulary
    text_view      text colored by surprise or by a neuron; ``eval``'s progress and figures
"""

from .base import make_console
from .inspect_view import line_chart, render_inspect
from .text_view import (
    ACTIVATION_BG,
    SURPRISE_BG,
    activation_level,
    colored_text,
    eval_lines,
    eval_progress,
    surprise_level,
    text_views,
)
from .training_view import TrainingView, training_summary

__all__ = ["ACTIVATION_BG", "SURPRISE_BG", "TrainingView", "activation_level", "colored_text",
           "eval_lines", "eval_progress", "line_chart", "make_console", "render_inspect",
           "surprise_level", "text_views", "training_summary"]
