"""Screenshots of the live notebooks as a researcher sees them: ``python docs/make_screenshots.py``.

Starts a real JupyterLab on a copy of ``notebooks/`` (the repository's notebooks stay without
outputs), opens each notebook that draws live charts in headless Chromium, presses "Run All"
through the Run menu, waits for the last cell, and photographs every live chart and the price
board while they move; then presses the notebook's stop button and photographs one chart
stopped. It also measures what the pictures cannot show: each chart's width against its cell's,
and whether a hover label survives the refreshes (sampled ten times a second for three
seconds with the mouse held over the chart). The PNGs land in ``docs/screenshots/``.

Needs JupyterLab and Playwright (``pip install -e ".[screenshots]"``) and a Chromium
(``apt-get install chromium``; Playwright drives it and downloads no browser). The notebooks'
kernel is ``--kernel-python`` (this Python by default), which must have marketlab installed.
A docs tool: not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "screenshots"
LIVE_CHART = re.compile(r"\blab\.(chart|book_chart|board|venues_chart)\(")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 1000}
KERNEL = "marketlab-screenshots"  # the kernel the copied notebooks ask for
KERNEL_NAME = "Python 3 (marketlab)"


def live_notebooks(folder: Path) -> list[Path]:
    """The notebooks that draw live charts (the others show static figures only)."""
    found = []
    for path in sorted(folder.glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        if any(c["cell_type"] == "code" and LIVE_CHART.search("".join(c["source"])) for c in cells):
            found.append(path)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def jupyterlab(work: Path, kernel_python: str) -> Iterator[str]:
    """A JupyterLab serving ``work`` on a free loopback port, its own config and runtime
    directories, a kernel running ``kernel_python``; yields its base URL (with
    the token) and stops it on the way out."""
    port, token = _free_port(), secrets.token_hex(16)
    home = work / ".jupyter-home"
    kernel_dir = home / "data" / "kernels" / KERNEL
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [kernel_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": KERNEL_NAME,
                "language": "python",
            }
        )
    )
    kernel_prefix = subprocess.run(
        [kernel_python, "-c", "import sys; print(sys.prefix)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        # the kernel's front-end extensions (ipywidgets, anywidget, plotly) where they live
        "JUPYTER_PATH": str(Path(kernel_prefix) / "share" / "jupyter"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    settings = home / "config" / "lab" / "user-settings" / "@jupyterlab"
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # every cell in the page (no virtual scrolling), so each chart can be found and scrolled to
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"})
    )
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={work}",
        "--LabApp.news_url=",
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = (work / "jupyterlab.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    said = (work / "jupyterlab.log").read_text()[-3000:]
                    raise RuntimeError(f"JupyterLab did not start:\n{said}") from None
                time.sleep(0.3)
        yield f"{base}|{token}"
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def run_all(page: Any) -> None:
    """Press Run → Run All Cells, as a reader does, and wait for the last cell to have run."""
    page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
    dialog = page.locator(".jp-Dialog")
    try:  # JupyterLab may ask which kernel to start, even for the one the notebook names
        dialog.wait_for(timeout=5_000)
    except Exception:
        pass
    else:
        dialog.locator("select").select_option(label=KERNEL_NAME)
        dialog.get_by_role("button", name="Select").click()
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    last = page.locator(".jp-CodeCell").last.locator(".jp-InputPrompt")
    deadline = time.monotonic() + 180
    while not re.fullmatch(r"\[\d+\]:", last.inner_text().strip()):
        if time.monotonic() > deadline:
            raise RuntimeError("Run All did not reach the last cell in 180 s")
        time.sleep(0.5)


def chart_cells(page: Any) -> Any:
    """The output areas holding a live chart (a plotly figure under a state line)."""
    outputs = page.locator(".jp-Cell-outputWrapper")
    return outputs.filter(has=page.locator(".js-plotly-plot")).filter(
        has=page.locator(".widget-html")
    )


def board_cells(page: Any) -> Any:
    return page.locator(".jp-Cell-outputWrapper").filter(
        has_text=re.compile(r"symbol\s*last\s*bid")
    )


def measure(page: Any, output: Any) -> dict[str, Any]:
    """The chart's width against its cell's, and how often a hover label is on screen while
    the mouse rests on the middle of the plot and the chart refreshes."""
    output.scroll_into_view_if_needed()
    plot = output.locator(".js-plotly-plot").first
    cell = output.bounding_box()
    box = plot.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.5)
    seen = 0
    for _ in range(30):
        time.sleep(0.1)
        seen += plot.locator(".hoverlayer .hovertext, .hoverlayer .legend").count() > 0
    page.mouse.move(0, 0)
    figure = plot.bounding_box()
    page.set_viewport_size({"width": VIEWPORT["width"] - 300, "height": VIEWPORT["height"]})
    time.sleep(1.5)
    narrower = (output.bounding_box()["width"], plot.bounding_box()["width"])
    page.set_viewport_size(VIEWPORT)
    time.sleep(1.5)
    return {
        "cell_width": round(cell["width"]),
        "chart_width": round(figure["width"]),
        "narrower_cell_and_chart_width": [round(w) for w in narrower],
        "chart_width_back": round(plot.bounding_box()["width"]),
        "hover_samples_with_label": f"{seen}/30",
        "status": output.locator(".widget-html").first.inner_text(),
    }


def shoot(notebook: Path, work: Path, server: str, out: Path, browser: Any) -> dict[str, Any]:
    base, token = server.split("|")
    page = browser.new_page()
    errors: list[str] = []  # what the page's scripts reported: a chart that fails to draw
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    # a workspace of its own: only this notebook open
    page.goto(f"{base}/lab/workspaces/{notebook.stem}/tree/{notebook.name}?reset&token={token}")
    try:
        run_all(page)
    except Exception:
        page.screenshot(path=str(work / f"failed-{notebook.stem}.png"))
        shutil.copy(work / f"failed-{notebook.stem}.png", out / f"failed-{notebook.stem}.png")
        raise
    time.sleep(3)  # a few seconds of live data: the charts have moved since Run All
    report: dict[str, Any] = {"notebook": notebook.stem, "pictures": [], "charts": []}
    stem = notebook.stem
    boards = board_cells(page)
    for i in range(boards.count()):
        boards.nth(i).scroll_into_view_if_needed()
        path = out / f"{stem}-board.png"
        boards.nth(i).screenshot(path=str(path))
        report["pictures"].append(path.name)
    charts = chart_cells(page)
    for i in range(charts.count()):
        chart = charts.nth(i)
        report["charts"].append(measure(page, chart))
        chart.scroll_into_view_if_needed()
        box = chart.locator(".nsewdrag").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.85, box["y"] + box["height"] * 0.4)
        time.sleep(1.2)  # refreshes come and go under the hover label
        path = out / f"{stem}-chart{i + 1}.png"
        chart.screenshot(path=str(path))
        page.mouse.move(0, 0)
        report["pictures"].append(path.name)
    button = page.get_by_role("button", name="stop collecting")
    if button.count() and charts.count():
        button.last.click()
        time.sleep(1.5)
        chart = charts.first
        chart.scroll_into_view_if_needed()
        path = out / f"{stem}-stopped.png"
        chart.screenshot(path=str(path))
        report["pictures"].append(path.name)
        report["after_stop"] = chart.locator(".widget-html").first.inner_text()
    report["browser_errors"] = errors
    page.close()
    shut_down_kernels(base, token)
    return report


def shut_down_kernels(base: str, token: str) -> None:
    """End the notebook's kernel (and with it anything the notebook left running)."""
    headers = {"Authorization": f"token {token}"}
    with urllib.request.urlopen(
        urllib.request.Request(f"{base}/api/sessions", headers=headers)
    ) as r:
        sessions = json.load(r)
    for session in sessions:
        request = urllib.request.Request(
            f"{base}/api/sessions/{session['id']}", headers=headers, method="DELETE"
        )
        urllib.request.urlopen(request).close()


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", help="names (01_live_prices …); default: live")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--kernel-python", default=sys.executable)
    parser.add_argument(
        "--chromium",
        default=shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium",
    )
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    chosen = live_notebooks(ROOT / "notebooks")
    if args.notebooks:
        chosen = [p for p in chosen if p.stem in args.notebooks or p.name in args.notebooks]
    args.out.mkdir(parents=True, exist_ok=True)
    reports = []
    with tempfile.TemporaryDirectory(prefix="marketlab-screenshots-") as tmp:
        work = Path(tmp)
        for path in chosen:
            notebook = json.loads(path.read_text())
            notebook["metadata"]["kernelspec"] = {"name": KERNEL, "display_name": KERNEL}
            (work / path.name).write_text(json.dumps(notebook))
        with jupyterlab(work, args.kernel_python) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(work / "chromium-profile"),
                executable_path=args.chromium,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport=VIEWPORT,
            )
            try:
                for path in chosen:
                    report = shoot(work / path.name, work, server, args.out, browser)
                    print(json.dumps(report, indent=1), flush=True)
                    reports.append(report)
            finally:
                browser.close()
    return reports


if __name__ == "__main__":
    main()
