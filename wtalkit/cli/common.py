"""Shared CLI pieces: error handling, config options, consoles."""

from __future__ import annotations

import functools
import json

import click
from rich.console import Console

from wtalkit.errors import WtalError

# Rich output goes to stderr so that ``--json`` keeps stdout for machine-readable data only.
err_console = Console(stderr=True)


def out_console() -> Console:
    """Rich console on stdout; wide enough for the mAP tables when piped to a file."""
    import sys

    return Console(width=None if sys.stdout.isatty() else 150)


class WtalGroup(click.Group):
    """A click group that turns user-input errors into one-line messages (exit 1)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except WtalError as e:
            raise click.ClickException(str(e)) from None
        except FileNotFoundError as e:
            raise click.ClickException(f"file not found: {e.filename or e}") from None
        except PermissionError as e:
            raise click.ClickException(f"permission denied: {e.filename or e}") from None
        except UnicodeDecodeError as e:
            raise click.ClickException(f"a file is not UTF-8 text ({e.reason} at byte {e.start})") from None
        except OSError as e:  # a path under a file, a read-only file system, a full disk, ...
            where = f": {e.filename}" if e.filename else ""
            raise click.ClickException(f"{e.strerror or type(e).__name__}{where}") from None
        except json.JSONDecodeError as e:
            raise click.ClickException(f"malformed JSON (line {e.lineno}: {e.msg})") from None
        except KeyboardInterrupt:
            raise click.ClickException(
                "interrupted; outputs written so far are complete and re-running resumes"
            ) from None


def config_options(f):
    """``--config FILE|PRESET`` and repeatable ``--set key=value``."""

    @click.option(
        "--config",
        "config_source",
        default=None,
        metavar="FILE|PRESET",
        help="YAML config file or preset name (thumos14, anet12, demo).",
    )
    @click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override a config value, e.g. --set train.seed=1 (repeatable).",
    )
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


def print_config(cfg, title: str = "resolved config") -> None:
    from rich.syntax import Syntax

    err_console.rule(title)
    err_console.print(Syntax(cfg.to_yaml(active_only=True), "yaml", background_color="default"))


def device_option(f):
    """``--device``: the same option on every command that computes."""
    return click.option(
        "--device",
        default=None,
        metavar="DEVICE",
        help="cpu, cuda, cuda:N or auto (cuda when present) [default: auto; training: the config's train.device].",
    )(f)


def precision_option(f):
    """``--precision`` of the training commands (``train.precision``)."""
    return click.option(
        "--precision",
        type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
        default=None,
        help="Mixed precision of the training steps [default: the config's train.precision: auto = bf16 on a "
        "GPU, fp32 on the CPU].",
    )(f)
