"""Before/after galleries: small inline thumbnails for dashboard markdown and HTML contact sheets."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image


def data_uri(rgb: np.ndarray, max_side: int = 192, quality: int = 80) -> str:
    """A JPEG thumbnail of an RGB image as a ``data:`` URI, so it shows without serving any file."""
    image = Image.fromarray(rgb)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def markdown_gallery(title: str, columns: list[str], rows: list[tuple[str, list[np.ndarray]]], note: str = "") -> str:
    """A markdown table with one row per photo: its caption, then one thumbnail per column."""
    lines = [f"# {title}", ""]
    if note:
        lines += [note, ""]
    lines += ["| photo | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for caption, images in rows:
        cells = " | ".join(f"![{c}]({data_uri(img)})" for c, img in zip(columns, images))
        lines.append(f"| {caption.replace('|', '/')} | {cells} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SheetPhoto:
    """One photo of a contact sheet: its path under the output folder, one thumbnail per column, and the size of
    the full-resolution output (width, height) when known."""

    name: str
    thumbnails: list[np.ndarray]
    size: tuple[int, int] | None = None


def image_size(path: Path) -> tuple[int, int] | None:
    """Width and height of an image file, from its header only; None if it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError):
        return None


SHEET_STYLE = """
:root{color-scheme:light}
body{margin:0;padding:24px;background:#808080;color:#111;font:15px/1.45 system-ui,sans-serif}
h1{margin:0 0 8px;font-size:22px;font-weight:600;word-break:break-all}
h2{font-size:18px;font-weight:600}
a{color:#0b1f4d}
.warning{padding:8px 12px;background:#f2e6a6;border-left:4px solid #8a6d00}
.run{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0 0 24px}
.run dt{font-weight:600}
.run dd{margin:0;word-break:break-all}
.sheet{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,460px),1fr));gap:24px}
.photo{margin:0}
.pair{display:grid;grid-template-columns:repeat(var(--columns),1fr);gap:4px}
.pair figure{margin:0}
.pair img{display:block;width:100%;height:auto;background:#6f6f6f}
.pair figcaption{font-size:12px;text-transform:uppercase;letter-spacing:.05em}
.photo>figcaption{margin-top:6px;word-break:break-all}
.size{color:#2b2b2b;white-space:nowrap}
.errors li{margin:2px 0;word-break:break-all}
"""


def html_contact_sheet(title: str, columns: list[str], photos: list[SheetPhoto], *, model_id: str,
                       created: datetime, errors: Sequence[tuple[str, str]] = (), note: str = "",
                       link_base: str = "../", more: int = 0) -> str:
    """A self-contained HTML page: the photos in a grid of cards on a neutral grey, each card the photo's
    thumbnails side by side (one per column) above its name and full size, linked to the full-resolution file;
    the model and date of the run above, the photos that could not be done below.

    Links are ``link_base`` + the photo's path, URL-quoted: relative, so they work when the folder is opened
    from disk (the sheet lives in ``OUTPUT/.colorize/``, hence ``../``). ``more`` counts the photos of the run
    not shown. Machine-readable attributes: ``data-name``, ``data-width`` and ``data-height`` on each
    ``figure.photo``, ``data-model-id`` on ``.model-id``, ``datetime`` on the run's ``time``, ``data-name`` on
    each error's ``li``.
    """
    esc = html.escape
    stamp = created.astimezone(timezone.utc)
    cards = []
    for photo in photos:
        href = esc(link_base + quote(photo.name))
        size = ""
        dims = ""
        if photo.size is not None:
            width, height = photo.size
            size = f' <span class="size">{width} × {height} px</span>'
            dims = f' data-width="{width}" data-height="{height}"'
        panels = "".join(
            f'<figure><a href="{href}"><img src="{data_uri(image, 320)}" alt="{esc(column)}: {esc(photo.name)}" '
            f'loading="lazy"></a><figcaption>{esc(column)}</figcaption></figure>'
            for column, image in zip(columns, photo.thumbnails)
        )
        cards.append(f'<figure class="photo" data-name="{esc(photo.name)}"{dims}>'
                     f'<div class="pair" style="--columns:{len(columns)}">{panels}</div>'
                     f'<figcaption><a href="{href}">{esc(photo.name)}</a>{size}</figcaption></figure>')
    shown = f"{len(photos)} shown" + (f", {more} more in the folder" if more else "")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{SHEET_STYLE}</style></head><body>",
        f"<header><h1>{esc(title)}</h1>",
        f'<p class="warning">{esc(note)}</p>' if note else "",
        '<dl class="run">',
        f'<dt>Model</dt><dd><code class="model-id" data-model-id="{esc(model_id)}">{esc(model_id)}</code></dd>',
        f'<dt>Date</dt><dd><time datetime="{stamp.isoformat(timespec="seconds")}">'
        f'{stamp:%Y-%m-%d %H:%M} UTC</time></dd>',
        f"<dt>Photos</dt><dd>{shown}; click one for the full-resolution file</dd>",
        f"<dt>Errors</dt><dd>{len(errors) or 'none'}</dd>",
        "</dl></header>",
        f'<main class="sheet">{"".join(cards)}</main>',
    ]
    if errors:
        items = "".join(f'<li data-name="{esc(name)}"><code>{esc(name)}</code>: {esc(_reason(name, error))}</li>'
                        for name, error in errors)
        parts.append(f'<section class="errors"><h2>Could not be coloured ({len(errors)})</h2><ul>{items}</ul>'
                     "</section>")
    parts.append("</body></html>\n")
    return "\n".join(part for part in parts if part)


def _reason(name: str, error: str) -> str:
    """An error message without the photo's name in front, which the list shows already."""
    prefix = f"{name}: "
    return error[len(prefix):] if error.startswith(prefix) else error
