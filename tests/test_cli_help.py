"""The command's help as a user reads it: every option explained with its default, examples, a version."""

from __future__ import annotations

import argparse
import inspect
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from flows.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["preprocess", "embed", "train", "pipeline", "colorize", "evaluate"]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [choices] = [a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(choices)


def cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *arguments], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_every_subcommand_is_covered():
    assert sorted(subcommands()) == sorted(COMMANDS)


RENAMED = {"report_dir": "report"}  # flow parameter -> the command's option, where the names differ


@pytest.mark.parametrize("name", COMMANDS)
def test_every_flow_parameter_has_an_option(name):
    """What a deployment can set, the command can too (a stalled run's advice, --seed, was once flow-only)."""
    import importlib

    module = importlib.import_module(f"flows.{'train' if name == 'pipeline' else name}")
    parameters = inspect.signature(getattr(module, name).fn).parameters
    options = {action.dest for action in subcommands()[name]._actions}
    assert {RENAMED.get(p, p) for p in parameters} - options == set()


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_explained_with_its_default(name):
    command = subcommands()[name]
    formatter = command._get_formatter()
    for action in command._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{name} {label} has no help"
        text = formatter._expand_help(action)  # the help as printed, default included
        assert "``" not in text, f"{name} {label}: raw RST in {text!r}"
        if action.required and action.option_strings:
            assert "required" in text, f"{name} {label} does not say it is required: {text!r}"
            continue
        takes_value = action.option_strings and action.nargs != 0  # not a flag, not a positional argument
        if takes_value:
            assert "default" in text, f"{name} {label} does not say its default: {text!r}"
        if takes_value and action.default not in (None, [], argparse.SUPPRESS):
            assert str(action.default) in text or "default:" in text, f"{name} {label}: {text!r}"


@pytest.mark.parametrize("name", COMMANDS)
def test_help_has_examples_and_no_rst(name):
    done = cli(name, "--help")
    assert done.returncode == 0, done.stderr
    assert "``" not in done.stdout
    examples = done.stdout.split("\nexamples:\n", 1)
    assert len(examples) == 2, done.stdout
    assert re.search(rf"^  colorization {name} \S", examples[1], re.M), examples[1]


def test_main_help_has_no_rst_and_points_to_the_commands():
    done = cli("--help")
    assert done.returncode == 0 and "``" not in done.stdout
    assert all(name in done.stdout for name in COMMANDS) and "examples:" in done.stdout


def test_version_is_the_installed_packages():
    done = cli("--version")
    assert done.returncode == 0, done.stderr
    try:
        expected = version("colorization")
    except PackageNotFoundError:
        from colorization import __version__ as expected
    assert done.stdout.strip().startswith(f"colorization {expected}"), done.stdout


def test_colorize_default_model_is_the_projects_wherever_the_command_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["colorize", "in", "out"])
    assert args.model == ROOT / "data" / "models" / "samples"
    assert args.input == tmp_path / "in", "paths given on the command line are still the current folder's"


def test_auto_weights_that_fall_back_to_random_say_which_option_did_it(tmp_path, sample_paths, monkeypatch, capsys):
    import colorization.network.extractor
    import flows.cli
    import flows.train

    (tmp_path / "photos").mkdir()
    shutil.copy2(sample_paths[0], tmp_path / "photos")
    calls = []
    monkeypatch.setattr(flows.cli, "_start", lambda *args, **kwargs: None)
    monkeypatch.setattr(colorization.network.extractor, "imagenet_available", lambda head: False)
    monkeypatch.setattr(flows.train, "pipeline", lambda **kwargs: calls.append(kwargs))
    code = main(["pipeline", str(tmp_path / "photos"), "--dataset", str(tmp_path / "ds"), "--model-dir",
                 str(tmp_path / "m"), "--weights", "auto"])
    assert code == 0 and calls[0]["weights"] == "none"
    err = capsys.readouterr().err
    assert "--weights auto" in err and "RANDOM WEIGHTS" in err and "--weights none" not in err
