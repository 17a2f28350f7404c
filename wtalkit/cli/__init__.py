"""The ``wtalkit`` command line: one thin command per library function, one file per command."""

from __future__ import annotations

import click

from wtalkit import __version__
from wtalkit.cli.alternate import alternate
from wtalkit.cli.common import WtalGroup
from wtalkit.cli.demo import demo
from wtalkit.cli.extract import extract
from wtalkit.cli.importer import import_thumos
from wtalkit.cli.localize import localize
from wtalkit.cli.online import online
from wtalkit.cli.pseudolabel import pseudolabel
from wtalkit.cli.score import score
from wtalkit.cli.train_online import train_online
from wtalkit.cli.warmup import warmup


@click.group(cls=WtalGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wtalkit")
def cli():
    """Weakly-supervised temporal action localization (CBP/VLP distillation-collaboration)."""


for command in (warmup, alternate, pseudolabel, localize, online, score, import_thumos, extract, train_online, demo):
    cli.add_command(command)


def _interrupt_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C: atomic writes remove their temporary files, the message is one line."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main():
    _interrupt_on_sigterm()
    cli(prog_name="wtalkit")
