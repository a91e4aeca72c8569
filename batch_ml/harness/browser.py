"""Headless Chromium for tests: a page's text after its scripts ran, screenshots for people
(test-artifacts/), and an HTML report's rendered text and decoded images for assertions."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .project import REPO

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless flags that keep Chromium off the network (no updates, sync or telemetry here).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
    "--virtual-time-budget=20000",
]


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        timeout=120,
        check=True,
    )


def page_text(url: str, profile: Path) -> str:
    """The visible text of a page after its scripts ran, as headless Chromium renders it."""
    dom = _chromium(["--dump-dom", url], profile).stdout.decode("utf-8", "replace")
    dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def screenshot(url: str, path: Path, profile: Path) -> Path:
    """A PNG of the page at `url` in `path`, as headless Chromium renders it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _chromium([f"--screenshot={path}", url], profile)
    return path


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
        dom = _chromium(["--dump-dom", probe.as_uri()], Path(folder) / "profile").stdout.decode(
            "utf-8", "replace"
        )
    found = re.search(r'data-rendered-images="(\d+)"', dom)
    assert found, f"the count script did not run: {dom[:300]}"
    return int(found.group(1))
