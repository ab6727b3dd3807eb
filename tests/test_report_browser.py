"""The HTML report in a real headless Chromium: it loads without console errors, every plot is
laid out with a nonzero size, and a full-page screenshot is kept in test-artifacts/."""

from __future__ import annotations

import pytest

import report_fixtures as fx
from conftest import REPO
from headless import find_chromium, inspect_page
from skindeep.report.build import render

ARTIFACTS = REPO / "test-artifacts"

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)",
)


@pytest.mark.parametrize("kind", ["study", "model"])
def test_report_in_headless_chromium(kind, tmp_path) -> None:
    if kind == "study":
        folder = fx.study_folder(tmp_path / "in", fx.study())
    else:
        folder = fx.model_folder(tmp_path / "in")
    files = render(folder, tmp_path / "out")
    shot = ARTIFACTS / f"report-{kind}.png"
    page = inspect_page(files.html, screenshot=shot)
    assert page.errors == []
    assert page.title.startswith("skindeep")
    expected = [p.name for p in files.figures]
    assert (
        [p["name"] for p in page.plots]
        == [p.stem for p in files.figures]
        == [e.removesuffix(".png") for e in expected]
    )
    for plot in page.plots:
        assert plot["complete"] and plot["natural_width"] > 0 and plot["natural_height"] > 0
        assert plot["width"] > 100 and plot["height"] > 50, plot
    assert shot.stat().st_size > 10_000


def test_the_check_sees_errors_and_empty_plots(tmp_path) -> None:
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><head><link rel="icon" href="data:,"><title>bad</title></head><body>'
        '<figure data-plot="broken"><img src="data:image/png;base64,AAAA"></figure>'
        '<script>console.error("boom")</script></body></html>'
    )
    report = inspect_page(page)
    assert any("boom" in e for e in report.errors)
    assert report.plots[0]["name"] == "broken" and report.plots[0]["natural_width"] == 0
