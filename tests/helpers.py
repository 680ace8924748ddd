"""Helpers the tests share: sample photos, generated and damaged images, the tiny training configuration, the
command line as a process and its Dask workers, the contact sheet read as a browser would."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples" / "photos"
FAKE_EXTRACTOR = "fake-extractor-16"  # the id of embedded_dataset's cheap 16-d embeddings


def copy_samples(paths: list[Path], folder: Path) -> list[Path]:
    """Copy photos into ``folder`` and return the copies."""
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(p, folder / p.name)) for p in paths]


def gradient_rgb(height: int = 48, width: int = 64) -> np.ndarray:
    """A colourful test image: red varies along x, green along y, blue constant."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), np.full_like(x, 96)], axis=-1
    ).astype(np.uint8)


def plant_bad_files(folder: Path, good_jpeg: Path) -> dict[str, str]:
    """Write unreadable files into ``folder``; returns their names with a fragment of the expected reason."""
    folder.mkdir(parents=True, exist_ok=True)
    data = good_jpeg.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not a photo\n")
    return {"truncated.jpg": "truncated", "empty.png": "empty", "notes.jpg": "not an image"}


def grey_copy(source: Path, target: Path) -> Path:
    """Save a greyscale version of a photo (as RGB, the way scanned prints often arrive)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.open(source).convert("L").convert("RGB").save(target, quality=90)
    return target


def fake_embedded_copy(dataset, folder: Path):
    """A copy of ``dataset`` in ``folder`` with cheap deterministic 16-d embeddings (no Xception) filed under
    FAKE_EXTRACTOR: each photo's mean L and ab, repeated."""
    from colorization.dataset.embeddings import write_embeddings
    from colorization.dataset.shards import Dataset, read_shard

    data = Dataset(folder)
    shutil.copytree(dataset.root, data.root)
    for shard in data.shards():
        rows = read_shard(shard)
        features = np.stack([rows.L.mean(axis=(1, 2)) / 255, rows.ab.mean(axis=(1, 2)).sum(axis=1) / 64] * 8, axis=1)
        write_embeddings(data.embeddings_dir(FAKE_EXTRACTOR) / shard.name, rows.ids, features, FAKE_EXTRACTOR)
    return data


def train_tiny(dataset, model_dir: Path, epochs: int = 1, resume: bool = False, **options):
    """Train (or resume) the tiny test configuration (batch 4, width 0.125, 20% validation) up to ``epochs``;
    returns the trainer and the model card."""
    from colorization.network.training import TrainConfig, Trainer

    config = TrainConfig(epochs=epochs, batch_size=4, learning_rate=2e-3, width=0.125, validation_percent=20.0,
                         **options)
    trainer = Trainer(dataset, model_dir, config)
    trainer.start(resume=resume)
    return trainer, trainer.run()


def start_cli(arguments: list[str], stderr_path: Path) -> subprocess.Popen:
    """``colorization ARGUMENTS`` as a user starts it, in its own process group (so that it can be killed whole),
    reporting to the test harness's server; its stderr goes to ``stderr_path`` (a file, not a pipe, which a
    chatty run could fill and block on)."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value(),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    with open(stderr_path, "w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "flows.cli", *arguments], cwd=ROOT, env=env,
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr)


def dask_workers(process: psutil.Process) -> list[psutil.Process]:
    """The Dask worker processes started under ``process`` (multiprocessing children, not its resource tracker)."""
    found = []
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            line = " ".join(child.cmdline())
            if "multiprocessing" in line and "resource_tracker" not in line:
                found.append(child)
    return found


def kill_a_dask_worker(process: subprocess.Popen, ready: Callable[[], bool], timeout: float = 240) -> bool:
    """SIGKILL one Dask worker of the CLI ``process`` as soon as ``ready()``, then wait for the run to end (its
    whole process group is killed if it outlives ``timeout``); returns whether a worker was killed."""
    killed = False
    try:
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline and not killed:
            workers = dask_workers(psutil.Process(process.pid))
            if workers and ready():
                workers[0].kill()
                killed = True
            time.sleep(0.01)
        process.wait(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return killed


# The contact sheet (colorization.colorize.gallery.html_contact_sheet), parsed through the attributes it promises.


@dataclass
class Card:
    name: str
    width: int | None
    height: int | None
    links: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # src of each thumbnail
    text: str = ""


@dataclass
class Sheet:
    cards: list[Card] = field(default_factory=list)
    model_ids: list[str] = field(default_factory=list)
    times: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    style: str = ""
    other_links: list[str] = field(default_factory=list)


class SheetParser(HTMLParser):
    """Collects what the page promises through its attributes: cards, model id, time, errors, links, style."""

    def __init__(self):
        super().__init__()
        self.sheet = Sheet()
        self.depth = 0  # nesting of <figure> inside the current card
        self.card: Card | None = None
        self.error: str | None = None
        self.in_style = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "figure" and "photo" in (a.get("class") or "").split():
            self.card = Card(a["data-name"], int(a["data-width"]) if "data-width" in a else None,
                             int(a["data-height"]) if "data-height" in a else None)
            self.depth = 1
        elif tag == "figure" and self.card:
            self.depth += 1
        elif tag == "a" and "href" in a:
            (self.card.links if self.card else self.sheet.other_links).append(a["href"])
        elif tag == "img" and self.card:
            self.card.images.append(a["src"])
        elif "data-model-id" in a:
            self.sheet.model_ids.append(a["data-model-id"])
        elif tag == "time":
            self.sheet.times.append(a["datetime"])
        elif tag == "li" and "data-name" in a:
            self.error = a["data-name"]
            self.sheet.errors[self.error] = ""
        elif tag == "style":
            self.in_style = True

    def handle_endtag(self, tag):
        if tag == "figure" and self.card:
            self.depth -= 1
            if self.depth == 0:
                self.sheet.cards.append(self.card)
                self.card = None
        elif tag == "li":
            self.error = None
        elif tag == "style":
            self.in_style = False

    def handle_data(self, data):
        if self.card:
            self.card.text += data
        if self.error is not None:
            self.sheet.errors[self.error] += data
        if self.in_style:
            self.sheet.style += data


def parse_sheet(page: str) -> Sheet:
    parser = SheetParser()
    parser.feed(page)
    parser.close()
    return parser.sheet


def resolve_link(sheet_path: Path, href: str) -> Path:
    """Where a link of the sheet leads when the file is opened from disk."""
    url = urlparse(urljoin(sheet_path.resolve().as_uri(), href))
    assert url.scheme == "file", f"{href} is not a relative link to a file"
    return Path(unquote(url.path))
