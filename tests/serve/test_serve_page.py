"""End to end: ``terramind serve`` as a real process, its page driven in headless Chromium (Playwright).

Skipped with the reason when Playwright or a Chromium binary is missing (CI installs Debian's chromium).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import rasterio
from serve_support import S2

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium")) if p and Path(p).exists()), None)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
READY_S = 120  # start-up on a busy 2-core CI machine: imports, random tiny model and LULC tokenizer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A ``terramind serve`` process on a free loopback port; yields its URL, stops it after the test."""
    port = free_port()
    argv = [sys.executable, "-m", "terramind.cli.main", "serve", "--model", "terramind_v1_tiny",
            "--weights", "random", "--outputs", "LULC", "--inputs", "S2L2A", "--device", "cpu",
            "--port", str(port), "--work-dir", str(tmp_path / "work")]  # fmt: skip
    log = (tmp_path / "server.log").open("w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("TERRAMIND_TOKEN", None)
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + READY_S
        while time.monotonic() < end and process.poll() is None:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail(f"server not ready: {(tmp_path / 'server.log').read_text()}")
        yield url
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def test_page_uploads_a_tile_generates_lulc_and_downloads_it(server: str, tmp_path: Path) -> None:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1366, "height": 900}, accept_downloads=True)
        page.goto(server)
        page.get_by_label("Upload GeoTIFFs").check()
        page.get_by_label("S2L2A (12 bands)").set_input_files(str(S2))
        page.get_by_label("Diffusion steps").fill("1")
        page.get_by_role("button", name="Generate").focus()
        page.keyboard.press("Enter")  # keyboard-usable: the form starts from the focused button
        page.wait_for_selector("#results:not([hidden]) figure img", timeout=60_000)
        page.wait_for_function(
            "[...document.querySelectorAll('#panels img')].every(i => i.complete && i.naturalWidth > 0)",
            timeout=30_000,
        )
        widths = page.eval_on_selector_all("#panels img", "imgs => imgs.map(i => i.naturalWidth)")
        assert len(widths) == 2 and min(widths) > 0  # the input and the LULC quicklook
        assert page.locator("#legend li").count() == 10  # the LULC classes
        assert "done: 1 of 1 tiles" in page.locator("#progress-text").inner_text()
        with page.expect_download() as download:
            page.get_by_role("button", name="Download LULC.tif").click()
        saved = tmp_path / "LULC.tif"
        download.value.save_as(saved)
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
    with rasterio.open(saved) as out, rasterio.open(S2) as src:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
    assert (tmp_path / "page.png").stat().st_size > 0
    if os.environ.get("TERRAMIND_SCREENSHOT"):  # keep a copy to look at
        shutil.copy(tmp_path / "page.png", os.environ["TERRAMIND_SCREENSHOT"])
