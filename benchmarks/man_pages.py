#!/usr/bin/env python3
"""Texts in other languages for the English base's rule: Debian's translated manual pages.

Downloads a manpages-LANG package (apt-get download: no install, no root needed beyond apt's
cache), renders its pages with groff, section 1 first, in name order, and writes the first
whole pages up to --chars characters, cut at a blank line, to OUT. The languages measured in
docs/training.md ("The English base by default"): pl, de, ru, es, it (manpages-LANG 4.18.1-1)
ja (manpages-ja 0.5.0.0.20221215) and zh_CN (manpages-zh 1.6.4.0-1); en is the English
originals (manpages and manpages-dev 6.03-2). Needs apt-get, dpkg-deb and groff.

    python benchmarks/man_pages.py pl /tmp/pl.txt
    python benchmarks/bench_quality.py --corpus /tmp/pl.txt --max-time 2m
"""

from __future__ import annotations

import argparse
import gzip
import re
import subprocess
import tempfile
from pathlib import Path

SECTIONS = ("man1", "man8", "man5", "man7", "man2", "man3")


def render(page: Path) -> str:
    """A manual page as plain UTF-8 text, runs of blank lines squeezed to one."""
    done = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", "-Kutf8"],
                          input=gzip.decompress(page.read_bytes()), capture_output=True)
    text = done.stdout.decode("utf-8", "replace")
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("lang", help="the pages' language code: pl, de, ru, ja, zh_CN, ...; en")
    ap.add_argument("out", type=Path)
    ap.add_argument("--chars", type=int, default=250_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        english = args.lang == "en"  # the original pages, in Debian's manpages and -dev
        # zh_CN: the package manpages-zh, the folder zh_CN
        packages = ["manpages", "manpages-dev"] if english else \
            [f"manpages-{args.lang.split('_')[0]}"]
        subprocess.run(["apt-get", "download", *packages], cwd=tmp, check=True)
        for deb in Path(tmp).glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "root")], check=True)
        folder = Path(tmp) / "root" / "usr" / "share" / "man" / ("" if english else args.lang)
        pages = [p for s in SECTIONS for p in sorted((folder / s).glob("*.gz"))]
        text = ""
        for page in pages:
            text += render(page)
            if len(text) >= args.chars:
                break
    if len(text) > args.chars:
        text = text[:text.rfind("\n\n", 0, args.chars) + 1]
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: {len(text):,} characters")


if __name__ == "__main__":
    main()
