"""The ``wtalkit`` command line: one thin command per library function."""

from __future__ import annotations

import click

from wtalkit import __version__
from wtalkit.cli.common import WtalGroup


@click.group(cls=WtalGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wtalkit")
def cli():
    """Weakly-supervised temporal action localization (CBP/VLP distillation-collaboration)."""


def _register():
    # Each module defines one or more commands and adds them to ``cli``.
    import importlib

    for mod in ("train", "localize", "online", "score", "importer", "extract", "train_online", "demo"):
        importlib.import_module(f"wtalkit.cli.{mod}").register(cli)


_register()


def main():
    cli(prog_name="wtalkit")
