"""The formats the English base's sources come in, read into text: HTML pages (and the OSIS
markup of SWORD modules), the KJV data file, SWORD's compressed commentary, dictd dictionaries
and the Jargon File.

Used by build_base.py; standard library only. Each reader returns text or parts of text, and
``normalise`` (here) makes them a corpus's text.
"""

import itertools
import re
import struct
import unicodedata
import zlib
from html.parser import HTMLParser
from pathlib import Path

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


# ---------------------------------------------------------------------------------------------
# The King James Bible

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
