"""The quickstart as a user sees it: JupyterLab (a subprocess) and headless Chromium (Playwright, with
Debian's /usr/bin/chromium) run all cells; the predict panel's bar must move through intermediate values
to 100% and the final counts must be on the page. A screenshot is saved under the test's tmp_path."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import NOTEBOOK

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Records every width the first progress bar of the page takes (widgets update it while the cell runs).
RECORD_WIDTHS = """() => {
    window.__widths = [];
    setInterval(() => {
        const bar = document.querySelector('.widget-hprogress .progress-bar');
        if (!bar) return;
        const w = parseFloat(bar.style.width);
        if (!isNaN(w) && window.__widths[window.__widths.length - 1] !== w) window.__widths.push(w);
    }, 10);
}"""


def kernel_idle(url: str, token: str, timeout: float = 60) -> None:
    """Wait until the server reports the notebook's kernel started and idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/api/sessions?token={token}", timeout=5) as response:
            sessions = json.load(response)
        if any(s["kernel"]["execution_state"] == "idle" for s in sessions):
            return
        time.sleep(0.3)
    raise AssertionError(f"no idle kernel after {timeout}s: {sessions}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyter_lab(sm_home, tmp_path):
    """A JupyterLab server on a free port, rooted in a directory holding a copy of the quickstart."""
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / "quickstart.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    log = open(tmp_path / "jupyter.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--IdentityProvider.token={token}", f"--port={port}", "--allow-root",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "jupyter.log").read_text()
                time.sleep(0.3)
        yield url, token
    finally:
        server.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_run_all_cells_in_jupyterlab(jupyter_lab, tmp_path):
    from playwright.sync_api import sync_playwright

    url, token = jupyter_lab
    started = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/lab/tree/quickstart.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000,
                                   state="attached")
            kernel_idle(url, token)
            page.wait_for_timeout(1000)  # let the page catch up with the kernel's status
            page.evaluate(RECORD_WIDTHS)
            page.click(".lm-MenuBar-itemLabel:text-is('Run')")
            page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
            # the last cell (teardown) prints that the endpoint was deleted once everything has run
            try:
                page.wait_for_selector("text=/endpoint \\S+ deleted/", timeout=120_000)
            except Exception:
                page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)
                raise AssertionError(f"the run did not finish; screenshot {tmp_path / 'failed.png'}; page:\n"
                                     + page.inner_text("body")[-3000:]) from None
            widths = page.evaluate("window.__widths")
            text = page.inner_text(".jp-Notebook")
            stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            errors = stderr.all_inner_texts()
            page.screenshot(path=str(tmp_path / "quickstart.png"), full_page=True)
        finally:
            browser.close()
    print(f"JupyterLab run of the quickstart: {time.monotonic() - started:.1f}s; bar widths {widths}")
    assert (tmp_path / "quickstart.png").stat().st_size > 10_000
    intermediate = [w for w in widths if 0 < w < 100]
    assert len(intermediate) >= 3, widths
    assert intermediate == sorted(intermediate), widths  # the bar only moves forward
    assert widths[-1] == 100, widths
    assert "450 of 450 rows done, 0 failed" in text
    assert "45/45 payloads" in text
    assert errors == []  # no cell printed an error (or anything else) to stderr
