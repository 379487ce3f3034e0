"""report.html and compare.html in headless Chromium: the page loads with no script or console error,
nothing is fetched from the network, and every image decodes to a non-zero size.

The page's own check script writes its findings into #render-check on load; --dump-dom prints the DOM
after load. Skipped without Chromium, except when GBPIPE_REQUIRE_SERVICES=1 (CI), where it fails.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.report.page import Section, Text, to_html
from tests.helpers.chromium import chromium, render
from tests.helpers.report_runs import adult_runs, copy_run, housing_run, staged_adult, wine_run

MARKER = re.compile(r'<span id="render-check"([^>]*)>')


def rendered_ok(page: Path, profile: Path, n_images: int) -> None:
    result = render(page, profile)
    assert result.returncode == 0, result.stderr[-2000:]
    marker = MARKER.search(result.stdout)
    assert marker, "the page's check script did not run (no #render-check in the DOM)"
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', marker.group(1)))
    assert attrs == {"images": str(n_images), "broken-images": "0", "errors": "0", "status": "ok"}
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], f"console messages: {console}"


def figures_in(doc: dict) -> int:
    return sum(len(s["figures"]) for s in doc["sections"].values())


@pytest.mark.parametrize("which", ["staged", "housing", "wine"])
def test_report_renders_in_chromium(which, tmp_path, tmp_path_factory):
    chromium()
    source = {"staged": staged_adult, "housing": housing_run, "wine": wine_run}[which](tmp_path_factory)
    run = copy_run(source, tmp_path)
    assert main(["report", "--run", str(run), "-q"]) == 0
    doc = json.loads((run / "report.json").read_text())
    rendered_ok(run / "report.html", tmp_path / "profile", figures_in(doc))


def test_compare_renders_in_chromium(tmp_path, tmp_path_factory):
    chromium()
    runs = adult_runs(tmp_path_factory)
    assert main(["report", "--compare", *map(str, runs), "--output", str(tmp_path / "cmp"), "-q"]) == 0
    rendered_ok(tmp_path / "cmp" / "compare.html", tmp_path / "profile", 1)


def test_the_check_catches_a_broken_page(tmp_path):
    """The same check fails on a page with a broken image, a blocked external image and a script error."""
    chromium()
    page = to_html(
        "broken",
        {"cards": [{"label": "score", "value": "1", "detail": ""}], "lines": []},
        [Section("s", "S").add(Text("text"))],
        "subtitle",
    )
    page = page.replace(
        "<main>",
        '<main><img src="data:image/png;base64,AAAA"><img src="http://example.com/x.png">'
        "<script>undefinedFunction();</script>",
    )
    broken = tmp_path / "broken.html"
    broken.write_text(page)
    result = render(broken, tmp_path / "profile")
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', MARKER.search(result.stdout).group(1)))
    assert attrs["status"] == "fail" and attrs["broken-images"] == "2" and int(attrs["errors"]) >= 2
    assert any(":CONSOLE" in line for line in result.stderr.splitlines())
