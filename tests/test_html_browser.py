"""The page of `charrnn inspect --html` in a real browser (headless Chromium over the DevTools
protocol): its script runs without an error or a network request, the text and the units
are all there, choosing a unit recolors the text, hovering and the arrow keys show the next
characters, the Content-Security-Policy holds, and a hostile model stays inert.

Skipped, saying why, where Chromium is not installed or cannot start (Debian: apt-get
install chromium; .ci/run installs it when it can)."""

import json
import re
from pathlib import Path

import chromium
import pytest
from click.testing import CliRunner

from charrnn import checkpoint
from charrnn.cli import main

ROOT = Path(__file__).resolve().parents[1]
SONNETS = (ROOT / "corpora" / "sonnets.txt").read_text()
TINY = ["--cell", "lstm", "--dropout", "0", "--hidden-size", "8", "--num-layers", "2",
        "--batch-size", "4", "--seq-len", "16"]
UNITS = 4


def run(args):
    r = CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def browser():
    executable = chromium.find()
    if executable is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium), so the "
                    "page was not rendered in a browser")
    try:
        b = chromium.Browser(executable, width=1200, height=2400)
    except (OSError, chromium.BrowserError) as e:
        pytest.skip(f"Chromium ({executable}) did not start: {e}")
    yield b
    b.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """Two pages: a tiny trained LSTM's (its validation text, 4 units) and a hostile one's
    (a vocabulary of markup, a corpus name of markup, a --prime of markup)."""
    folder = tmp_path_factory.mktemp("browser")
    corpus = folder / "text.txt"
    corpus.write_text(SONNETS[:6000])
    model = folder / "m.npz"
    run(["train", corpus, "-o", model, *TINY, "--max-steps", "8", "--eval-every", "4"])
    run(["inspect", model, "--html", folder / "page.html", "--top-neurons", UNITS,
         "--max-chars", "500"])
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)></style>\u202e'
    (folder / "evil.txt").write_text((SONNETS[:1500] + evil) * 2)
    bad = folder / "h.npz"
    run(["train", folder / "evil.txt", "-o", bad, *TINY, "--max-steps", "2", "--eval-every",
         "2"])
    ck = checkpoint.load(bad)
    checkpoint.save(bad, ck.model, resume=ck.resume, history=ck.history, best=ck.best,
                    corpus=dict(ck.corpus, name=evil + "<img src=y onerror=alert(3)>"))
    run(["inspect", bad, "--html", folder / "hostile.html", "--prime", evil * 3])
    return folder / "page.html", folder / "hostile.html"


def page_data(path):
    raw = path.read_text()
    return json.loads(re.search(r'<script type="application/json" id="page-data">(.*?)'
                                r"</script>", raw, re.S).group(1))


def backgrounds(b):
    return b.js("Array.from(document.getElementById('chars').children, "
                "c => getComputedStyle(c).backgroundColor)")


def test_the_page_renders_without_errors_or_requests(browser, pages, tmp_path):
    page = pages[0]
    browser.open(page.as_uri())
    assert browser.js("document.documentElement.dataset.ready") == "true"
    assert browser.problems() == []
    assert browser.requests() == [page.as_uri()]  # the page itself, nothing else
    assert browser.js("document.getElementById('chars').children.length") == 500
    assert browser.js("document.querySelectorAll('button.unit').length") == UNITS
    assert browser.js("document.querySelectorAll('#colorby option').length") == UNITS + 1
    # every strip is drawn: the text's and one per unit, none left blank
    painted = browser.js("Array.from(document.querySelectorAll('canvas.strip'), c => "
                         "c.getContext('2d').getImageData(0, 0, c.width, 1).data"
                         ".filter((v, i) => i % 4 == 3 && v > 0).length)")
    assert painted == [500] * (UNITS + 1)
    shot = tmp_path / "page.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


def test_choosing_a_unit_recolors_the_text_by_its_activation(browser, pages):
    page = pages[0]
    data = page_data(page)
    browser.open(page.as_uri())
    by_surprise = backgrounds(browser)
    assert len(set(by_surprise)) > 3  # several surprise levels
    unit = data["units"][1]
    browser.open(page.as_uri() + f"#neuron={unit['unit']}")
    assert browser.problems() == []
    assert browser.js("document.getElementById('chars').dataset.coloredBy") == \
        f"unit {unit['unit']}"
    assert browser.js("document.getElementById('colorby').value") == str(unit["unit"])
    by_unit = backgrounds(browser)
    assert by_unit != by_surprise
    rgb = [tuple(map(int, re.findall(r"\d+", c)))[:3] for c in by_unit]
    for (r, _, b), a in zip(rgb, unit["activations"], strict=True):
        if a <= -20:
            assert b > r  # negative: blue
        elif a >= 20:
            assert r > b  # positive: red
    # the select and the buttons choose too, and surprise comes back
    browser.js("document.querySelectorAll('button.unit')[0].click()")
    assert browser.js("document.getElementById('chars').dataset.coloredBy") == \
        f"unit {data['units'][0]['unit']}"
    browser.js("var s = document.getElementById('colorby'); s.value = '';"
               "s.dispatchEvent(new Event('change'))")
    assert backgrounds(browser) == by_surprise


def test_hover_and_arrow_keys_show_the_next_characters(browser, pages):
    page = pages[0]
    data = page_data(page)
    browser.open(page.as_uri())
    i = 40
    box = browser.js(f"(() => {{ const c = document.getElementById('chars').children[{i}];"
                     "c.scrollIntoView({block: 'center'}); const r = c.getBoundingClientRect();"
                     "return [r.left + r.width / 2, r.top + r.height / 2]; })()")
    browser.mouse_to(*box)
    assert browser.js("document.getElementById('tip').hidden") is False
    tip = browser.js("document.getElementById('tip').innerText")
    assert f"character {i + 1} of 500" in tip and "the model expects next:" in tip
    assert f"surprise {data['surprise'][i] / 1000:.3f} nats" in tip
    top = data["next"][i]
    assert data["glyphs"][top[0]] in tip and f"{top[1] / 10:.1f}%" in tip
    assert browser.js("document.querySelectorAll('#tip .row').length") == 5
    browser.js(f"document.getElementById('chars').children[{i}].click()")
    browser.call("Input.dispatchKeyEvent", session=True, type="keyDown", key="ArrowRight",
                 code="ArrowRight", windowsVirtualKeyCode=39)
    assert browser.js("Array.prototype.indexOf.call(document.getElementById('chars')"
                      ".children, document.activeElement)") == i + 1
    assert f"character {i + 2} of 500" in browser.js("document.getElementById('tip').innerText")
    assert browser.problems() == []


def test_the_policy_blocks_any_load(browser, pages):
    browser.open(pages[0].as_uri())
    blocked = browser.js("new Promise(done => { document.addEventListener("
                         "'securitypolicyviolation', e => done(e.effectiveDirective));"
                         "const img = new Image(); img.src = 'http://127.0.0.1:9/x.png';"
                         "document.body.appendChild(img); })")
    assert blocked == "img-src"


def test_a_hostile_model_stays_inert(browser, pages):
    page = pages[1]
    browser.open(page.as_uri())
    assert browser.js("document.documentElement.dataset.ready") == "true"
    assert browser.problems() == []
    assert not [e for e in browser.events if e.get("method") == "Page.javascriptDialogOpening"]
    assert browser.requests() == [page.as_uri()]
    assert browser.js("document.querySelectorAll('img').length") == 0
    assert browser.js("document.scripts.length") == 2
    assert browser.js("document.styleSheets.length") == 1
    text = browser.js("document.getElementById('chars').textContent")
    assert text.startswith('<script>alert(1)</script>"><img src=x onerror=alert(2)></style>'
                           "U+202E")
    card = browser.js("document.getElementById('card').textContent")
    assert "<img src=y onerror=alert(3)>" in card and "\u202e" not in card
