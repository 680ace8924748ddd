"""Measuring colour quality: evaluation samples coloured exactly as colorize would, the figures that score them
against their originals, and the report (``metrics.json``, ``photos.parquet``, ``report.html``)."""
