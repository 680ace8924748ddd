"""Prefect flows: thin orchestration over the :mod:`colorization` library, one module per flow."""
