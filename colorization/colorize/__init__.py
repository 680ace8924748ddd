"""Colouring an archive: the batch loop (prepare, predict, render), full-resolution rendering with edge-aware
upsampling, the manifest of what has been coloured, and before/after galleries. Framework-free, so that Dask
workers stay light: the network comes in as a function."""
