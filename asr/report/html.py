"""`report.html`: the sweep's table and plots on one page that opens offline in any browser.

The plots are embedded as data URIs, so the page is one file that still works when it is
copied off the machine or attached to a message; it loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td.text { text-align: left; }
tr.failed td { background: #fde8e8; } tr.interrupted td, tr.running td { background: #fff6dd; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; font-size: 0.85em; }
"""


def _cell(value: str) -> str:
    try:
        float(value)
        return f"<td>{html.escape(value)}</td>"
    except ValueError:
        return f'<td class="text">{html.escape(value)}</td>'


def table_html(header: list[str], rows: list[list[str]]) -> str:
    status_at = header.index("status") if "status" in header else None
    lines = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        status = row[status_at] if status_at is not None else ""
        cells = "".join(_cell(v) for v in row)
        lines.append(f'<tr class="{html.escape(status)}">{cells}</tr>')
    lines.append("</table>")
    return "\n".join(lines)


def image_html(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt = html.escape(path.stem.replace("_", " "))
    return f'<h2>{alt}</h2>\n<img alt="{alt}" src="data:image/png;base64,{data}">'


def write_html(
    out_dir: Path,
    header: list[str],
    rows: list[list[str]],
    plots: list[Path],
    *,
    title: str | None = None,
    note: str = "",
) -> Path:
    """Write `report.html` into `out_dir`; return its path."""
    title = title or f"Sweep report: {out_dir}"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{html.escape(note)}</p>' if note else "",
        f'<p class="note">{len(rows)} jobs, best dev CER first; failed jobs in red, '
        "interrupted ones in yellow.</p>",
        table_html(header, rows),
        *(image_html(p) for p in plots),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body>\n</html>\n"
    )
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
