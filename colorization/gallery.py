"""Before/after galleries: small inline thumbnails for dashboard markdown and HTML contact sheets."""

from __future__ import annotations

import base64
import html
import io

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


def html_contact_sheet(title: str, columns: list[str], rows: list[tuple[str, list[np.ndarray]]], note: str = "") -> str:
    """A self-contained HTML page with the same layout as :func:`markdown_gallery`."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><td>{html.escape(caption)}</td>"
        + "".join(
            f'<td><img src="{data_uri(img, 320)}" alt="{html.escape(c)}"></td>' for c, img in zip(columns, images)
        )
        + "</tr>"
        for caption, images in rows
    )
    return (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}td{vertical-align:top;padding:4px}img{max-width:320px}</style>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>"
        f"<table><tr><th>photo</th>{head}</tr>{body}</table>\n"
    )
