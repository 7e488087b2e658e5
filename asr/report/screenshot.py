"""A screenshot of a sweep's `report.html`, taken by headless Chromium, to look at it as a reader
would (and to check in tests that a real browser renders the table and the plots).

    python -m asr.report.screenshot multirun/<date>/<time>        # writes report.png beside it
    python -m asr.report.screenshot multirun/<date>/<time> --out page.png --width 1400

Needs Chromium (Debian: `apt-get install chromium`). The flags keep it off the network: the
page is a local file that loads nothing, and without them Chromium tries to reach Google's
services at every start.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",  # as root in a container there is no sandbox to enter
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def page_height(page: Path) -> int:
    """A window tall enough for the whole page: Chromium's --screenshot takes the window only.
    The table's rows and the embedded plots set it; an overestimate only adds white below."""
    text = page.read_text(encoding="utf-8")
    return 300 + 28 * text.count("<tr") + 650 * text.count("<img")


def screenshot(
    page: Path, out: Path, *, width: int = 1400, height: int | None = None, timeout: float = 60
) -> Path:
    """Render `page` (an HTML file) in headless Chromium into the PNG `out`; return `out`."""
    browser = find_browser()
    if browser is None:
        raise RuntimeError(
            f"no Chromium found (looked for {', '.join(BROWSERS)}): apt-get install chromium"
        )
    height = height or page_height(page)
    with tempfile.TemporaryDirectory(prefix="asr-chromium-") as profile:
        cmd = [
            browser,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={out.resolve()}",
            page.resolve().as_uri(),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0 or not out.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{browser} exited {result.returncode} without a screenshot: {last}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, help="default: report.png in the sweep folder")
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args(argv)
    page = args.sweep_dir / "report.html"
    if not page.is_file():
        print(f"error: no report.html in {args.sweep_dir}: run python -m asr.report first")
        return 2
    try:
        out = screenshot(page, args.out or args.sweep_dir / "report.png", width=args.width)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
