"""Manifests: small Parquet tables with one row per source file, read, merged and written atomically.

The dataset's manifest (preprocess) and the archive's manifest (colorize) share this code and differ only in
their schema.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from colorization.atomic import atomic_path


def read(path: Path, schema: pa.Schema) -> pd.DataFrame:
    """The manifest at ``path``, or an empty one with the schema's columns."""
    if not path.exists():
        return schema.empty_table().to_pandas()
    return pq.read_table(path, schema=schema).to_pandas()


def write(path: Path, manifest: pd.DataFrame, schema: pa.Schema) -> None:
    """Write the manifest atomically."""
    table = pa.Table.from_pandas(manifest, schema=schema, preserve_index=False)
    with atomic_path(path) as temp:
        pq.write_table(table, temp)


def merge(manifest: pd.DataFrame, records: list[dict]) -> pd.DataFrame:
    """The manifest with ``records`` added, each replacing an earlier row of the same ``source``."""
    if not records:
        return manifest
    new = pd.DataFrame.from_records(records, columns=list(manifest.columns))
    kept = manifest[~manifest["source"].isin(new["source"])]
    merged = pd.concat([kept, new], ignore_index=True) if len(kept) else new
    return merged.sort_values("source", ignore_index=True)
