"""Samples you can trust, through the command line: `sample --check`, the copied
spans of the samples on the `inspect --html` page, and the references (a 5-gram model and the
character frequencies of the training text) on the start line, in the model file, in `inspect`
and in `eval --corpus`."""

import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_html_report import Page

import charrnn
from charrnn import checkpoint
from charrnn.cli import main
from charrnn.copies import MIN_SPAN, CopyIndex
from charrnn.data import read_corpus, split_train_val
from charrnn.display import copy_lines
from charrnn.references import reference_losses

ROOT = Path(__file__).resolve().parents[1]
SONNETS = (ROOT / "corpora" / "sonnets.txt").read_text()
TINY = ["--cell", "lstm", "--dropout", "0", "--hidden-size", "8", "--num-layers", "2",
        "--batch-size", "4", "--seq-len", "16"]
# markup and an ampersand, which the page must show as text when it marks them copied
POEM = ("Whose woods these are I think I know.\nHis house is in the <b>village</b> though;\n"
        "He will not see me stopping here\nTo watch his woods fill up with snow & ice.\n")


def run(args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "160"},
                              input=input)


def ok(args, input=None):
    r = run(args, input)
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def memorised(tmp_path_factory):
    """A GRU that learned POEM by heart, next to its corpus poem.txt: the whole poem in one
    window, 150 steps, no dropout and no validation (about a second)."""
    folder = tmp_path_factory.mktemp("memorised")
    (folder / "poem.txt").write_text(POEM)
    out = folder / "mem.npz"
    for _ in charrnn.train(read_corpus(folder / "poem.txt"), out,
                           model_options={"cell": "gru", "hidden_size": 64, "num_layers": 1,
                                          "dropout": 0.0},
                           train_options={"max_steps": 150, "epochs": 0, "val_frac": 0.0,
                                          "seq_len": len(POEM) - 1, "batch_size": 1,
                                          "lr": 0.01}, threads=1):
        pass
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny LSTM trained through the CLI on the Sonnets' first 6,000 characters (text.txt,
    next to it; the last 600 held out): the model file and the run's stderr."""
    folder = tmp_path_factory.mktemp("in_context")
    (folder / "text.txt").write_text(SONNETS[:6000])
    out = folder / "m.npz"
    r = ok(["train", folder / "text.txt", "-o", out, *TINY, "--max-steps", "8",
            "--eval-every", "4"])
    return out, r.stderr


def expected_references(text: str, val_frac: float = 0.1) -> dict:
    """What a run on ``text`` computes at its start: the references fitted to the training
    part and scored on the validation text."""
    corpus = read_corpus(["-"], stdin=io.BytesIO(text.encode()))
    train, val = split_train_val(corpus.ids, val_frac)
    return reference_losses(train, val, len(corpus.vocab))


def note_of(references: dict, of: str = "this text") -> str:
    return (f"a {references['order']}-gram model of {of}: {references['ngram']:.2f}; "
            f"character frequencies: {references['unigram']:.2f}")


# ----------------------------------------------------------------------------- sample --check

SAMPLE = ["-p", "Whose ", "-n", "140", "--temp", "0.5", "--seed", "2"]


def test_check_reports_a_memorised_sample_as_copied_and_stdout_stays_the_text(memorised):
    plain = ok(["sample", "-m", memorised, *SAMPLE])
    r = ok(["sample", "-m", memorised, *SAMPLE, "--check", memorised.parent / "poem.txt"])
    assert r.stdout == plain.stdout  # the text alone, as without --check
    assert r.stdout.startswith("Whose ") and len(r.stdout) == len("Whose ") + 140 + 1
    generated = r.stdout[len("Whose "):-1]  # the generated text is checked, not the prime
    report = CopyIndex(POEM).check(generated)
    assert report.sample_chars == 140
    assert report.longest >= 0.8 * 140 and report.copied_share >= 0.9
    lines = r.stderr.splitlines()
    assert lines == copy_lines([report], "poem.txt")
    assert lines[0] == "copy check against poem.txt (the generated text, not the prime):"
    spans = len(report.spans)
    assert lines[1] == (f"  sample 1: longest verbatim span {report.longest} characters; "
                        f"{report.copied_share:.1%} of the sample in {spans} "
                        f"span{'' if spans == 1 else 's'} of {MIN_SPAN}+")
    assert lines[2] == f'    longest: "{report.longest_text[:72]}" ...'.replace("\n", "\\n")


def test_check_in_json_adds_the_report_to_each_sample(memorised):
    r = ok(["sample", "-m", memorised, *SAMPLE, "--num-samples", "2", "--json",
            "--check", memorised.parent / "poem.txt"])
    assert r.stderr == ""
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [rec["sample"] for rec in records] == [1, 2]
    for rec in records:
        report = CopyIndex(POEM).check(rec["text"])
        assert rec["copies"] == {"corpus": "poem.txt", "corpus_matches_model": True,
                                 **report.to_dict()}
        assert rec["copies"]["sample_chars"] == len(rec["text"]) == 140
        assert rec["copies"]["copied_share"] >= 0.9 and rec["copies"]["min_span"] == MIN_SPAN


def test_several_samples_each_get_their_report_after_the_text(memorised):
    r = ok(["sample", "-m", memorised, "-n", "60", "--seed", "4", "--num-samples", "3",
            "--check", memorised.parent / "poem.txt"])
    texts = [part.split("===\n", 1)[1].rstrip("\n") for part in r.stdout.split("=== sample ")[1:]]
    reports = CopyIndex(POEM).check_all(texts)
    assert r.stderr.splitlines() == copy_lines(reports, "poem.txt")
    assert [line.split(":")[0] for line in r.stderr.splitlines()
            if line.startswith("  sample")] == ["  sample 1", "  sample 2", "  sample 3"]


def test_a_corpus_that_is_not_the_model_s_gets_a_note_and_is_checked_anyway(memorised,
                                                                            tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(POEM[:80] + "and miles to go before I sleep\n")
    r = ok(["sample", "-m", memorised, *SAMPLE, "--json", "--check", other])
    ours = hashlib.sha256(other.read_bytes()).hexdigest()
    theirs = checkpoint.load(memorised).corpus["sha256"]
    assert r.stderr == (f"note: --check other.txt (sha256 {ours[:12]}...) is not the corpus "
                        f"{memorised} was trained on (poem.txt, sha256 {theirs[:12]}...); "
                        "checking against it anyway\n")
    rec = json.loads(r.stdout)
    assert rec["copies"] == {"corpus": "other.txt", "corpus_matches_model": False,
                             **CopyIndex(other.read_text()).check(rec["text"]).to_dict()}


def test_a_model_without_a_corpus_record_is_checked_without_a_note(memorised, tmp_path):
    bare = tmp_path / "bare.npz"
    charrnn.save(charrnn.load(memorised), bare)
    r = ok(["sample", "-m", bare, *SAMPLE, "--json", "--check", memorised.parent / "poem.txt"])
    assert r.stderr == "" and json.loads(r.stdout)["copies"]["corpus_matches_model"] is None


def test_min_span_a_folder_and_standard_input(memorised, tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    shutil.copy(memorised.parent / "poem.txt", folder)
    for where, stdin in ((folder, None), ("-", POEM)):
        r = ok(["sample", "-m", memorised, *SAMPLE, "--json", "--min-span", "5",
                "--check", where], input=stdin)
        rec = json.loads(r.stdout)
        expected = CopyIndex(POEM, min_span=5).check(rec["text"]).to_dict()
        assert rec["copies"] == {"corpus": "poem.txt" if stdin is None else "<stdin>",
                                 "corpus_matches_model": True, **expected}
        assert rec["copies"]["min_span"] == 5


def test_a_missing_corpus_is_one_line_and_exit_2_before_any_text(memorised, tmp_path):
    missing = tmp_path / "missing.txt"
    r = run(["sample", "-m", memorised, "--check", missing])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == f"Error: corpus file not found: {missing}\n"


@pytest.mark.parametrize("args, message", [
    (["--min-span", "5"], "Error: --min-span sets the copy check's span: it needs --check"),
    (["--prime-file", "-", "--check", "-"],
     "Error: --prime-file and --check cannot both read standard input"),
    (["--check", "x.txt", "--min-span", "0"], "Error: Invalid value for '--min-span'"),
])
def test_bad_check_options_are_usage_errors(memorised, args, message):
    r = run(["sample", "-m", memorised, *args], input="Whose")
    assert r.exit_code == 2 and r.stdout == ""
    assert message in r.stderr and "Traceback" not in r.stderr


def test_the_check_s_lines_escape_what_a_terminal_would_obey():
    corpus = "ab\x1b[2J\u202ecd\x07" * 20
    report = CopyIndex(corpus).check(corpus[:100] + "zz")
    lines = copy_lines([report], "evil\x1b]0;x\x07.txt")
    shown = "\n".join(lines)
    assert len(lines) == 3 and not any(c in shown for c in "\x1b\x07\u202e")
    assert "evil\\x1b]0;x\\x07.txt" in lines[0] and "\\x1b[2J" in lines[2]
    assert lines[2].endswith('" ...')  # 100 characters: the first 72 are quoted


# ----------------------------------------------------------------------------- the page

def marks(page: Page, pre: dict) -> list[str]:
    return [e["text"] for e in page.all("mark") if e["parent"] is pre]


def test_the_page_marks_the_copied_spans_of_its_samples(memorised, tmp_path):
    out = tmp_path / "page.html"
    ok(["inspect", memorised, "--html", out, "--text", memorised.parent / "poem.txt"])
    page = Page(out)
    pres = page.all("pre")
    summaries = [e["text"] for e in page.all("p", class_="copies")]
    assert len(pres) == len(summaries) == 3
    for pre, summary in zip(pres, summaries, strict=True):
        report = CopyIndex(POEM).check(pre["text"])
        assert report.copied_share >= 0.9 and summary == report.summary()
        assert marks(page, pre) == [pre["text"][a:b] for a, b in report.spans]
    assert ("Marked: the characters inside spans of 20 or more characters found verbatim in "
            "poem.txt.") in page.by_id("samples")["text"]
    # the poem's markup, copied, is text: escaped inside the marks, never an element
    assert "<mark>" in page.raw and "&lt;b&gt;village&lt;/b&gt;" in page.raw
    assert not [e for e in page.all("b") if e["parent"]["tag"] in ("pre", "mark")]


def test_without_a_text_to_check_against_nothing_is_marked(memorised, tmp_path):
    out = tmp_path / "page.html"
    ok(["inspect", memorised, "--html", out, "--prime", "Whose woods"])
    page = Page(out)
    assert page.all("mark") == [] and page.all("p", class_="copies") == []
    assert "Marked:" not in page.by_id("samples")["text"]


def test_by_default_the_samples_are_checked_against_the_model_s_corpus(trained, tmp_path):
    model, _ = trained
    out = tmp_path / "page.html"
    ok(["inspect", model, "--html", out])
    page = Page(out)
    corpus = (model.parent / "text.txt").read_text()
    summaries = [e["text"] for e in page.all("p", class_="copies")]
    assert summaries == [CopyIndex(corpus).check(pre["text"]).summary()
                         for pre in page.all("pre")]
    assert "found verbatim in text.txt." in page.by_id("samples")["text"]


def test_the_page_shows_the_references_beside_the_model_s_loss(trained, tmp_path):
    model, _ = trained
    out = tmp_path / "page.html"
    ok(["inspect", model, "--html", out, "--prime", "Shall I"])
    page = Page(out)
    ck = checkpoint.load(model)
    refs = ck.references
    tiles = [e["text"] for e in page.all("div", class_="tile")]
    assert f"{refs['ngram']:.2f}a 5-gram model of the training text" in tiles
    row = next(e for e in page.all("tr") if e["text"].startswith("in context"))
    assert row["text"] == (f"in contextval {ck.best['val_loss']:.2f} nats/char; "
                           + note_of(refs, "the training text"))


# ----------------------------------------------------------------------------- references

def test_the_start_line_shows_the_references_and_the_file_records_them(trained):
    model, stderr = trained
    expected = expected_references(SONNETS[:6000])
    assert f"references on the same text, nats/char: {note_of(expected)}\n" in stderr
    assert checkpoint.load(model).references == expected
    assert expected["predictions"] == 599 and expected["fit_chars"] == 5400
    assert 1.0 < expected["ngram"] < expected["unigram"] < expected["uniform"]


def test_a_resumed_run_keeps_its_references_without_fitting_them_again(trained, tmp_path,
                                                                       monkeypatch):
    model, _ = trained
    copy = tmp_path / "m.npz"
    shutil.copy(model, copy)
    stored = checkpoint.load(model).references

    def refit(*args, **kwargs):
        raise AssertionError("a resumed run fitted its references again")

    monkeypatch.setattr("charrnn.training.reference_losses", refit)
    r = ok(["train", model.parent / "text.txt", "-o", copy, "--resume", "--max-steps", "12"])
    assert f"references on the same text, nats/char: {note_of(stored)}\n" in r.stderr
    ck = checkpoint.load(copy)
    assert ck.resume.step == 12 and ck.references == stored


def test_a_run_without_validation_has_no_references(memorised, tmp_path):
    assert checkpoint.load(memorised).references is None
    (tmp_path / "t.txt").write_text(SONNETS[:3000])
    r = ok(["train", tmp_path / "t.txt", "-o", tmp_path / "m.npz", *TINY, "--max-steps", "2",
            "--val-frac", "0"])
    assert "references" not in r.stderr
    assert checkpoint.load(tmp_path / "m.npz").references is None


def test_a_fine_tuned_run_fits_them_over_its_grown_vocabulary(trained, tmp_path):
    model, _ = trained
    text = SONNETS[6000:9000] + "\u00e9\u00e7"  # two characters the base never saw
    (tmp_path / "t.txt").write_text(text)
    r = ok(["train", tmp_path / "t.txt", "-o", tmp_path / "ft.npz", "--init-from", model,
            "--batch-size", "4", "--seq-len", "16", "--max-steps", "2"])
    ck = checkpoint.load(tmp_path / "ft.npz")
    corpus = read_corpus(tmp_path / "t.txt")
    train, val = split_train_val(corpus.encode(ck.model.vocab), 0.1)
    expected = reference_losses(train, val, len(ck.model.vocab))
    assert ck.references == expected and len(ck.model.vocab) > len(corpus.vocab)
    assert f"references on the same text, nats/char: {note_of(expected)}\n" in r.stderr


def as_format_3(src: Path, dst: Path) -> None:
    """The model file as a charrnn of format 3 wrote it: no references."""
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(np.lib.format.read_array(io.BytesIO(members["meta.npy"])).tobytes())
    meta["format_version"] = 3
    del meta["references"]
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(json.dumps(meta).encode(), np.uint8))
    members["meta.npy"] = buffer.getvalue()
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_inspect_shows_the_references_and_an_older_file_has_none(trained, tmp_path):
    model, _ = trained
    ck = checkpoint.load(model)
    r = ok(["inspect", model])
    row = next(line for line in r.stdout.splitlines() if "in context" in line)
    assert (f"val {ck.best['val_loss']:.2f} nats/char; " + note_of(ck.references,
                                                                   "the training text")) in row
    doc = json.loads(ok(["inspect", model, "--json"]).stdout)
    assert doc["references"] == ck.references
    old = tmp_path / "old.npz"
    as_format_3(model, old)
    assert "in context" not in ok(["inspect", old]).stdout
    doc = json.loads(ok(["inspect", old, "--json"]).stdout)
    assert doc["references"] is None and doc["file"]["format_version"] == 3


# ----------------------------------------------------------------------------- eval --corpus

def test_eval_corpus_on_the_validation_tail_gives_the_references_training_stored(trained,
                                                                                 tmp_path):
    model, _ = trained
    (tmp_path / "val.txt").write_text(SONNETS[5400:6000])
    corpus = model.parent / "text.txt"
    doc = json.loads(ok(["eval", model, tmp_path / "val.txt", "--corpus", corpus,
                         "--json"]).stdout)
    assert doc["references"] == {**checkpoint.load(model).references, "corpus": "text.txt",
                                 "corpus_matches_model": True, "training_chars": 5400,
                                 "held_out": 600}
    r = ok(["eval", model, tmp_path / "val.txt", "--corpus", corpus])
    refs = doc["references"]
    assert r.stdout.splitlines()[-2:] == [
        f"references   {note_of(refs, 'the training text')} (nats/char)",
        "fitted to    text.txt: 5,400 training characters, without the last 600, which the "
        "model's run held out"]
    assert r.stderr == ""


def test_eval_without_corpus_has_no_references(trained, tmp_path):
    model, _ = trained
    (tmp_path / "val.txt").write_text(SONNETS[5400:6000])
    r = ok(["eval", model, tmp_path / "val.txt"])
    assert r.stdout.splitlines()[-1].startswith("bits/char")  # the last line, as before
    assert json.loads(ok(["eval", model, tmp_path / "val.txt", "--json"]).stdout)[
        "references"] is None


def test_eval_with_another_corpus_says_so_and_goes_on(trained, tmp_path):
    model, _ = trained
    (tmp_path / "val.txt").write_text(SONNETS[5400:6000])
    other = tmp_path / "other.txt"
    other.write_text(SONNETS[10_000:14_000])
    r = ok(["eval", model, tmp_path / "val.txt", "--corpus", other, "--json"])
    ours = hashlib.sha256(other.read_bytes()).hexdigest()
    theirs = checkpoint.load(model).corpus["sha256"]
    assert r.stderr == (f"note: --corpus other.txt (sha256 {ours[:12]}...) is not the corpus "
                        f"{model} was trained on (text.txt, sha256 {theirs[:12]}...); fitting "
                        "the references to it anyway\n")
    refs = json.loads(r.stdout)["references"]
    assert refs["corpus_matches_model"] is False
    assert (refs["training_chars"], refs["held_out"]) == (3600, 400)


def test_eval_corpus_of_a_file_without_a_run_fits_the_whole_corpus(trained, tmp_path):
    model, _ = trained
    bare = tmp_path / "bare.npz"
    charrnn.save(charrnn.load(model), bare)
    (tmp_path / "val.txt").write_text(SONNETS[5400:6000])
    r = ok(["eval", bare, tmp_path / "val.txt", "--corpus", model.parent / "text.txt",
            "--json"])
    assert r.stderr == (f"note: {bare} records no training run, so no validation text: the "
                        "references are fitted to the whole corpus\n")
    refs = json.loads(r.stdout)["references"]
    assert (refs["training_chars"], refs["held_out"]) == (6000, 0)
    assert refs["corpus_matches_model"] is None


def test_eval_corpus_errors(trained, tmp_path):
    model, _ = trained
    (tmp_path / "val.txt").write_text(SONNETS[5400:6000])
    r = run(["eval", model, tmp_path / "val.txt", "--corpus", tmp_path / "missing.txt"])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == f"Error: corpus file not found: {tmp_path / 'missing.txt'}\n"
    r = run(["eval", model, "-", "--corpus", "-"], input="Shall I")
    assert r.exit_code == 2
    assert "Error: TEXT and --corpus cannot both read standard input" in r.stderr
