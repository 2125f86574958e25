"""Command-line options that set an ``AdaptConfig`` field take their help from the field's
description, so each text exists once (the config's JSON schema, the Prefect form and
``--help`` all say the same); ``note`` adds what only the command line has."""

from __future__ import annotations

from typing import Any

import typer

from transfer.settings.config import AdaptConfig


def field_help(field: str, note: str = "") -> str:
    description = AdaptConfig.model_fields[field].description
    if not description:
        raise KeyError(f"AdaptConfig.{field} has no description for its command-line help")
    return f"{description} {note}".strip()


def config_option(field: str, *flags: str, note: str = "", **kwargs: Any) -> Any:
    """A ``typer.Option`` (default None: the config's value) for ``AdaptConfig.<field>``."""
    return typer.Option(None, *flags, help=field_help(field, note), **kwargs)
