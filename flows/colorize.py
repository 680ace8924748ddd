"""The ``colorize`` flow: every black-and-white photo of an archive back in colour, at full resolution.

Decoding and encoding run on Dask workers; the network runs here, in batches, holding the ``gpu`` slot.
Only small arrays (model-size L and a,b) travel between them, and at most a few batches are in flight, so
memory stays bounded whatever the archive's size.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Annotated

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.concurrency.sync import concurrency
from pydantic import Field
from tqdm import tqdm

from colorization import catalog
from colorization.archive import Entry, list_entries, read_entry
from colorization.atomic import atomic_path
from colorization.card import RANDOM_WARNING, model_id
from colorization.errors import ImageError
from colorization.gallery import html_contact_sheet, markdown_gallery
from colorization.images import DEFAULT_MAX_PIXELS
from colorization.render import COLORIZED, COLOUR, ERROR, PENDING, UNCHANGED, file_hash, prepare, render
from flows.common import GPU_LIMIT, dask_runner, project_path, resolve_weights

GALLERY_SIZE = 8


@task(name="prepare-photos")
def prepare_photos(source: Path, entries: list[Entry], size: int, max_pixels: int) -> list[dict]:
    """Small L, colour flag and content hash of each photo of a batch, or the reason it cannot be read."""
    out = []
    for entry in entries:
        try:
            data = read_entry(source, entry.name)
            prepared = prepare(data, entry.name, size, max_pixels)
            out.append({"entry": entry, "hash": file_hash(data), "prepared": prepared})
        except (ImageError, OSError) as exc:
            out.append({"entry": entry, "hash": None, "error": str(exc)})
    return out


@task(name="render-photo")
def render_photo(source: Path, entry: Entry, ab: np.ndarray, output: Path, max_pixels: int, thumbnail: int) -> dict:
    """Colour one photo at full resolution into ``output``; returns its status (and thumbnails if asked)."""
    try:
        data = read_entry(source, entry.name)
        thumbs = render(data, entry.name, ab.astype(np.float32), output / entry.name, max_pixels, thumbnail)
        return {"status": COLORIZED, "thumbs": thumbs}
    except (ImageError, OSError) as exc:
        return {"status": ERROR, "error": str(exc)}


@flow(name="colorize-batches")
def colorize_batches(
    source: Path, output: Path, model_dir: Path, weights: str | None, pending: list[Entry], batch_size: int,
    recolor: bool, max_pixels: int, temperature: float | None = None,
) -> dict:
    """Prepare, predict and render ``pending`` batch by batch, recording each result in the manifest."""
    from colorization.colorize import Colorizer  # here, not at the top: Dask workers never import Keras

    logger = get_run_logger()
    with concurrency(GPU_LIMIT, occupy=1):
        colorizer = Colorizer.load(model_dir, weights, temperature)
    if colorizer.extractor.random:
        logger.warning("%s: %s", model_dir, RANDOM_WARNING)
    batches = [pending[i : i + batch_size] for i in range(0, len(pending), batch_size)]
    manifest = catalog.read_manifest(output)
    progress = create_progress_artifact(0.0, key="colorize-progress", description=f"Colouring {source}")
    bar = tqdm(total=len(pending), unit="photo", desc="colorize", disable=None)
    records, gallery, rendering = [], [], deque()
    flushed = thumbnails = 0
    preparing = deque(prepare_photos.submit(source, b, colorizer.size, max_pixels) for b in batches[:2])

    def finish(entry: Entry, digest: str, future) -> None:
        result = future.result()
        records.append(catalog.record(entry, result["status"], colorizer.id, digest, result.get("error")))
        if result.get("thumbs") is not None:
            gallery.append((entry.name, list(result["thumbs"])))
        bar.update()

    for index in range(len(batches)):
        prepared = preparing.popleft().result()
        if index + 2 < len(batches):
            preparing.append(prepare_photos.submit(source, batches[index + 2], colorizer.size, max_pixels))
        to_colour = []
        for item in prepared:
            if "error" in item:
                records.append(catalog.record(item["entry"], ERROR, colorizer.id, error=item["error"]))
                bar.update()
            elif item["prepared"].colour and not recolor:
                records.append(catalog.record(item["entry"], COLOUR, colorizer.id, item["hash"]))
                bar.update()
            else:
                to_colour.append(item)
        if to_colour:
            claims = [catalog.record(i["entry"], PENDING, colorizer.id, i["hash"]) for i in to_colour]
            manifest = catalog.merge(manifest, records[flushed:] + claims)
            flushed = len(records)
            catalog.write_manifest(output, manifest)
            with concurrency(GPU_LIMIT, occupy=1):
                ab = colorizer.predict_ab(np.stack([i["prepared"].lightness for i in to_colour]), batch_size)
            for item, ab_small in zip(to_colour, ab):
                thumb = 256 if thumbnails < GALLERY_SIZE else 0
                thumbnails += 1
                future = render_photo.submit(source, item["entry"], ab_small.astype(np.float16), output, max_pixels,
                                             thumb)
                rendering.append((item["entry"], item["hash"], future))
        while len(rendering) > 2 * batch_size or (rendering and rendering[0][2].state.is_final()):
            finish(*rendering.popleft())
        manifest = catalog.merge(manifest, records[flushed:])
        flushed = len(records)
        catalog.write_manifest(output, manifest)
        update_progress_artifact(progress, 100.0 * (index + 1) / len(batches))
    while rendering:
        finish(*rendering.popleft())
    bar.close()
    catalog.write_manifest(output, catalog.merge(manifest, records[flushed:]))
    return {"records": records, "gallery": gallery, "random": colorizer.extractor.random}


@flow(name="colorize")
def colorize(
    input: Path,
    output: Path,
    model: Path = Path("data/models/samples"),
    weights: str | None = None,
    batch_size: Annotated[int, Field(ge=1)] = 8,
    recolor: bool = False,
    overwrite: bool = False,
    workers: Annotated[int | None, Field(ge=1)] = None,
    dask_address: str | None = None,
    max_pixels: Annotated[int, Field(ge=1)] = DEFAULT_MAX_PIXELS,
    temperature: Annotated[float | None, Field(gt=0)] = None,
) -> dict:
    """Colour every black-and-white photo under ``input`` (a folder, .zip or .tar) into ``output``.

    ``output`` mirrors the input tree, each photo in its original format with its metadata; photos already in
    colour are left alone unless ``recolor``. Only new or changed photos are processed on a re-run (all of
    them after a model change). ``weights`` defaults to the Xception weights recorded in the model's card; it
    must give the extractor the model was trained with. ``temperature`` sets a classification model's
    annealed-mean decoding (default: its card's); photos coloured at another temperature are coloured again.
    """
    logger = get_run_logger()
    source, output, model_dir = project_path(input), project_path(output), project_path(model)
    catalog.check_paths(source, output)
    entries = list_entries(source)
    manifest = catalog.read_manifest(output)
    current_model = model_id(model_dir, temperature)
    work = catalog.plan(entries, manifest, output, current_model, recolor, overwrite)
    logger.info("%s: %d photos, %d to process, %d left as they are", source, len(entries), len(work.pending),
                len(work.skipped))
    started = time.perf_counter()
    result = {"records": [], "gallery": [], "random": "RANDOM" in current_model}
    if work.pending:
        runner = dask_runner(workers, dask_address, len(work.pending))
        result = colorize_batches.with_options(task_runner=runner)(
            source, output, model_dir, resolve_weights(weights), work.pending, batch_size, recolor, max_pixels,
            temperature,
        )
    seconds = time.perf_counter() - started
    records = result["records"] + work.skipped
    catalog.write_manifest(output, catalog.merge(catalog.read_manifest(output), records))
    summary = _summary(records, len(work.pending), seconds)
    for row in result["records"]:
        if row["status"] == ERROR:
            logger.warning("%s", row["error"])
    _publish(output, summary, result["gallery"], result["random"], records)
    logger.info("%s; contact sheet: %s", ", ".join(f"{k}: {v}" for k, v in summary.items()),
                output / catalog.STATE_DIR / "gallery.html")
    return summary


def _summary(records: list[dict], processed: int, seconds: float) -> dict:
    def count(status: str) -> int:
        return sum(r["status"] == status for r in records)

    return {
        "photos": len(records),
        "colorized": count(COLORIZED),
        "colour": count(COLOUR),
        "errors": count(ERROR),
        "unchanged": count(UNCHANGED),
        "images/s": round(processed / seconds, 3) if processed and seconds > 0 else 0.0,
    }


def _publish(output: Path, summary: dict, gallery: list, random: bool, records: list[dict]) -> None:
    note = f"**WARNING: {RANDOM_WARNING}. These colours are meaningless.**" if random else ""
    create_table_artifact(key="colorize-summary", table=[summary], description=f"Colorize run into {output}")
    errors = [{"source": r["source"], "error": r["error"]} for r in records if r["status"] == ERROR]
    if errors:
        create_table_artifact(key="colorize-errors", table=errors, description="Photos that could not be coloured")
    if gallery:
        columns = ["before", "after"]
        with atomic_path(output / catalog.STATE_DIR / "gallery.html") as temp:
            temp.write_text(html_contact_sheet(f"Colorized: {output}", columns, gallery, note.replace("*", "")))
        create_markdown_artifact(
            key="colorize-gallery",
            markdown=markdown_gallery("Before / after", columns, gallery[:4], note),
            description=f"A few photos coloured into {output}",
        )
