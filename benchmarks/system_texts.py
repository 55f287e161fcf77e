#!/usr/bin/env python3
"""Texts unlike the English base's, from a Debian system's own files, for the base's rule.

Each KIND joins its files in name order, whole files, up to --chars characters cut at a blank
line, and writes them to OUT (en-ru stops at the paragraph that reaches --chars):

- c-headers: the C headers in /usr/include (the top folder);
- html: the HTML files under /usr/share/doc;
- shell: the shell scripts in /usr/bin (a first line of "#!" naming a shell);
- copyright: Debian's copyright files, /usr/share/doc/*/copyright;
- en-ru: English and Russian manual pages, paragraph by paragraph, 44% English by characters
  (two texts of benchmarks/man_pages.py, given with --english and --russian).

What a kind holds depends on the packages installed: the measurements in docs/training.md ("The
English base by default") name the machine's. Files that are not UTF-8 are left out.

    python benchmarks/system_texts.py c-headers /tmp/c.txt
    python benchmarks/bench_quality.py --corpus /tmp/c.txt --max-time 2m
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

ENGLISH_SHARE = 0.44  # of the en-ru text's characters: 75% of it in the base's vocabulary


def _is_shell_script(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            first = f.readline()
    except OSError:
        return False
    return first.startswith(b"#!") and b"sh" in first


def _files(kind: str) -> list[Path]:
    if kind == "c-headers":
        found = Path("/usr/include").glob("*.h")
    elif kind == "html":
        found = map(Path, glob.glob("/usr/share/doc/**/*.html", recursive=True))  # no dot-files
    elif kind == "shell":
        found = (p for p in Path("/usr/bin").iterdir() if p.is_file() and _is_shell_script(p))
    else:
        found = Path("/usr/share/doc").glob("*/copyright")
    return sorted(found, key=str)


def _joined(paths: list[Path], chars: int) -> str:
    """Whole files up to ``chars`` characters, cut at the blank line before them."""
    text = ""
    for path in paths:
        try:
            text += path.read_text(encoding="utf-8").replace("\r\n", "\n") + "\n"
        except (OSError, UnicodeDecodeError):
            continue
        if len(text) >= chars:
            break
    if len(text) <= chars:
        return text
    cut = text.rfind("\n\n", 0, chars)
    return text[:cut + 1] if cut >= 0 else text[:chars]


def _interleaved(english: str, russian: str, chars: int) -> str:
    """Paragraphs of each in turn, keeping English at ENGLISH_SHARE of the characters."""
    sources = {"en": iter(english.split("\n\n")), "ru": iter(russian.split("\n\n"))}
    taken, parts = {"en": 0, "ru": 0}, []
    while sum(taken.values()) < chars:
        key = "en" if taken["en"] < ENGLISH_SHARE * max(1, sum(taken.values())) else "ru"
        paragraph = next(sources[key], None)
        if paragraph is None:
            break
        parts.append(paragraph)
        taken[key] += len(paragraph) + 2
    return "\n\n".join(parts) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kind", choices=("c-headers", "html", "shell", "copyright", "en-ru"))
    ap.add_argument("out", type=Path)
    ap.add_argument("--chars", type=int, default=250_000)
    ap.add_argument("--english", type=Path, help="en-ru: the English manual pages' text")
    ap.add_argument("--russian", type=Path, help="en-ru: the Russian manual pages' text")
    args = ap.parse_args()
    if args.kind == "en-ru":
        if not (args.english and args.russian):
            ap.error("en-ru needs --english and --russian (texts of benchmarks/man_pages.py)")
        text = _interleaved(args.english.read_text(encoding="utf-8"),
                            args.russian.read_text(encoding="utf-8"), args.chars)
    else:
        text = _joined(_files(args.kind), args.chars)
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: {len(text):,} characters")


if __name__ == "__main__":
    main()
