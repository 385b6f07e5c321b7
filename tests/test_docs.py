"""The README documents every flag of every command, and its quick start names commands that exist."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from gramstyle.apps.cli import build_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_flag_is_in_the_readme() -> None:
    missing = []
    for name, sub in _subparsers(build_parser()).items():
        for action in sub._actions:
            longs = [s for s in action.option_strings if s.startswith("--") and s != "--help"]
            if longs and not any(f"`{flag}" in README for flag in longs):
                missing.append(f"{name} {longs[0]}")
    assert not missing, f"flags missing from README.md: {missing}"


def test_every_command_in_the_readme_exists() -> None:
    commands = set(_subparsers(build_parser()))
    used = set(re.findall(r"^gramstyle (\w+)", README, flags=re.MULTILINE))
    assert used <= commands, f"README uses unknown commands: {used - commands}"
    assert commands <= used, f"README shows no example of: {commands - used}"
