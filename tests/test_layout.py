"""The library's layering: no Prefect anywhere in it, and no deep-learning framework outside ``network``."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import colorization

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("keras", "tensorflow", "jax", "torch")


def _modules(prefix: str = "colorization.") -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(colorization.__path__, prefix) if not m.ispkg)


def _loaded_after_importing(modules: list[str]) -> set[str]:
    """Top-level packages in ``sys.modules`` after a fresh interpreter imports ``modules``."""
    script = ("import importlib, json, sys\n"
              f"for name in {modules!r}: importlib.import_module(name)\n"
              "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_every_module_belongs_to_a_package_named_for_its_part_of_the_work():
    top = {name for name in _modules() if name.count(".") == 1}
    packages = {name.split(".")[1] for name in _modules() if name.count(".") == 2}
    assert packages == {"photos", "dataset", "network", "colorize", "evaluation"}
    modules = ("atomic", "batching", "errors", "lock", "manifest", "preflight", "quiet")
    assert top == {f"colorization.{m}" for m in modules}


def test_the_library_never_imports_prefect():
    assert "prefect" not in _loaded_after_importing(_modules())


def test_only_the_network_package_imports_a_deep_learning_framework():
    """Dask workers preprocess, render and score with these modules; a framework there would cost each worker
    seconds and hundreds of MB at start."""
    light = [name for name in _modules() if not name.startswith("colorization.network.")]
    assert not _loaded_after_importing(light) & set(FRAMEWORKS)


def test_every_benchmark_script_imports_and_every_shell_script_parses():
    """The benchmarks run where no test does (a rented GPU machine): a library move that leaves one of their
    imports behind must fail here, not after the machine has been started."""
    load = ("import importlib.util, pathlib, sys\n"
            "for path in map(pathlib.Path, sys.argv[1:]):\n"
            "    spec = importlib.util.spec_from_file_location('bench_' + path.stem, path)\n"
            "    sys.modules[spec.name] = importlib.util.module_from_spec(spec)\n"
            "    spec.loader.exec_module(sys.modules[spec.name])\n")
    benchmarks = ROOT / "benchmarks"
    paths = os.pathsep.join(map(str, (ROOT, benchmarks)))  # as `python benchmarks/X.py` sees its siblings
    done = subprocess.run([sys.executable, "-c", load, *map(str, sorted(benchmarks.glob("*.py")))], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": paths})
    assert done.returncode == 0, done.stderr[-2000:]
    for shell in sorted(benchmarks.glob("*.sh")):
        subprocess.run(["bash", "-n", str(shell)], check=True)
