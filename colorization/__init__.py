"""Photo colorization: learn to colour black-and-white photos and colour whole archives.

The library is framework-free: pure functions and classes over numpy, Pillow, scikit-image and pyarrow.
Orchestration lives in ``flows/`` (Prefect), the network in :mod:`colorization.network.model` (Keras 3).
"""

__version__ = "0.1.0"
