"""The contact sheet (``OUTPUT/.colorize/gallery.html``), read as a browser would: parsed, links resolved."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from PIL import Image

from colorization.colorize.gallery import SheetPhoto, html_contact_sheet, image_size
from tests.helpers import gradient_rgb, parse_sheet, resolve_link


def test_contact_sheet_links_sizes_model_date_grid_and_errors(tmp_path):
    output = tmp_path / "coloured"
    names = ["roll 1/a#1.jpg", "b.png"]  # a space and a '#', which an unquoted link would break on
    sizes = {}
    for name, (w, h) in zip(names, [(64, 48), (40, 30)]):
        (output / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(gradient_rgb(h, w)).save(output / name)
        sizes[name] = image_size(output / name)
    photos = [SheetPhoto(n, [gradient_rgb(), gradient_rgb()], sizes[n]) for n in names]
    created = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    page = html_contact_sheet("Colorized: <archive>", ["before", "after"], photos,
                              model_id="xception-spatial-ab12/cd34", created=created,
                              errors=[("bad.jpg", "bad.jpg: truncated <file>")], more=3)
    sheet_path = output / ".colorize" / "gallery.html"
    sheet_path.parent.mkdir()
    sheet_path.write_text(page, encoding="utf-8")

    sheet = parse_sheet(sheet_path.read_text(encoding="utf-8"))
    assert [c.name for c in sheet.cards] == names
    for card in sheet.cards:
        assert (card.width, card.height) == sizes[card.name]
        assert f"{card.width} × {card.height}" in card.text and card.name in card.text
        assert len(card.images) == 2 and all(src.startswith("data:image/jpeg;base64,") for src in card.images)
        assert card.links and {resolve_link(sheet_path, href) for href in card.links} == {output / card.name}
        assert (output / card.name).is_file()
    assert sheet.model_ids == ["xception-spatial-ab12/cd34"]
    assert [datetime.fromisoformat(t) for t in sheet.times] == [created]
    assert sheet.errors == {"bad.jpg": "bad.jpg: truncated <file>"}
    assert sheet.other_links == [], "nothing else to fetch: the page works offline"
    body = re.search(r"body\{([^}]*)\}", sheet.style).group(1)
    grey = re.search(r"background:#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})", body)
    assert grey and len(set(grey.groups())) == 1, f"a neutral background: {body}"
    assert re.search(r"\.sheet\{[^}]*display:grid", sheet.style)


def test_contact_sheet_without_sizes_or_errors(tmp_path):
    page = html_contact_sheet("t", ["before", "after"], [SheetPhoto("x.jpg", [gradient_rgb()] * 2)], model_id="m",
                              created=datetime.now(timezone.utc))
    sheet = parse_sheet(page)
    assert [(c.name, c.width, c.height) for c in sheet.cards] == [("x.jpg", None, None)]
    assert sheet.errors == {}
    assert image_size(tmp_path / "missing.jpg") is None
    (tmp_path / "notes.jpg").write_text("not an image")
    assert image_size(tmp_path / "notes.jpg") is None
