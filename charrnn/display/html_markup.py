"""Text from a model file or a corpus made inert in HTML, data for the page's script, and the
page's Content-Security-Policy.

Every string from outside goes through ``text`` (kept on its lines) or ``value`` (one line):
HTML's special characters become entities and what could act instead of showing (controls,
bidi overrides, line separators) is written as a visible escape, as on the terminal. Data
for the script is JSON with ``<``, ``>``, ``&`` and U+2028/2029 as \\u escapes, so it cannot
close its element or start markup.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json

from .base import one_line, safe

__all__ = ["policy", "script_json", "text", "value"]

_JSON_ESCAPES = {ord(c): f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"}


def text(s) -> str:
    """Text for an element's content, line breaks and tabs kept (``base.safe``), escaped."""
    return html.escape(safe(str(s)), quote=True)


def value(s) -> str:
    """A name or figure for one line or an attribute (``base.one_line``), escaped."""
    return html.escape(one_line(str(s)), quote=True)


def script_json(data) -> str:
    """``data`` as JSON that is safe inside a <script> element (strict JSON: no NaN)."""
    raw = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return raw.translate(_JSON_ESCAPES)


def _source_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def policy(script: str, style: str) -> str:
    """The page's Content-Security-Policy: nothing from the network or any other file, no
    plugins, forms or base changes; only this exact inline ``script`` and ``style`` (by their
    sha256) run, and images only as data: URLs."""
    return ("default-src 'none'; "
            f"script-src {_source_hash(script)}; style-src {_source_hash(style)}; "
            "img-src data:; base-uri 'none'; form-action 'none'")
