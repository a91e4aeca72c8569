"""Open an HTML report in headless Chromium: a screenshot for people, the DOM for assertions."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from .services import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, page_text, screenshot

# Appended to a copy of the report: after load, record how many data-URI images decoded.
_COUNT_SCRIPT = """<script>addEventListener("load", () => {
  const ok = [...document.images].filter(
    (i) => i.src.startsWith("data:image/") && i.complete && i.naturalWidth > 0);
  document.body.setAttribute("data-rendered-images", String(ok.length));
});</script>"""


def screenshot_report(html_path: Path, name: str) -> Path:
    """Render `html_path` with headless Chromium; the PNG is test-artifacts/<name>.png."""
    with tempfile.TemporaryDirectory() as profile:
        return screenshot(html_path.resolve().as_uri(), ARTIFACTS / f"{name}.png", Path(profile))


def report_text(html_path: Path) -> str:
    """The visible text of the report as Chromium renders it."""
    with tempfile.TemporaryDirectory() as profile:
        return page_text(html_path.resolve().as_uri(), Path(profile))


def report_image_count(html_path: Path) -> int:
    """How many <img> with a data URI source Chromium decoded (naturalWidth > 0)."""
    assert CHROMIUM is not None, "chromium is not installed"
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe.html"
        probe.write_text(html_path.read_text(encoding="utf-8") + _COUNT_SCRIPT, encoding="utf-8")
        dom = subprocess.run(
            [
                CHROMIUM,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={folder}/profile",
                "--dump-dom",
                probe.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        ).stdout.decode("utf-8", "replace")
    found = re.search(r'data-rendered-images="(\d+)"', dom)
    assert found, f"the count script did not run: {dom[:300]}"
    return int(found.group(1))
