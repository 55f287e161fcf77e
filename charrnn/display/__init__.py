"""Everything the user sees: the training view (live bar or plain log lines), tables, colored
text, and the HTML page.

The only part of charrnn that imports rich. All of it goes to stderr except what a command
produces as its result (``eval_lines``).

    base           the console (silent when its reader leaves), safe text, number formats
    training_view  the live bar / log lines of ``train``, its start and end summaries
    inspect_view   ``inspect``: file, parameters, loss chart, diagnostics, vocabulary
    text_view      text colored by surprise or by a neuron; ``eval``'s progress and figures
    html_view      ``inspect --html``: the self-contained page (svg: its charts; html_markup:
                   its escaping, script data and Content-Security-Policy)
"""

from .base import make_console
from .html_view import render_page
from .inspect_view import line_chart, render_inspect
from .text_view import (
    ACTIVATION_BG,
    SURPRISE_BG,
    activation_level,
    colored_text,
    copy_lines,
    eval_lines,
    eval_progress,
    surprise_level,
    text_views,
)
from .training_view import TrainingView, training_summary

__all__ = ["ACTIVATION_BG", "SURPRISE_BG", "TrainingView", "activation_level", "colored_text",
           "copy_lines", "eval_lines", "eval_progress", "line_chart", "make_console",
           "render_inspect", "render_page", "surprise_level", "text_views", "training_summary"]
