"""Workspaces are the partitions of every sync asset. The name carries the watermark history."""

from __future__ import annotations

import re

from dagster import DynamicPartitionsDefinition

WORKSPACE_PARTITIONS_NAME = "workspace"
# Matched with fullmatch: "$" would also accept a trailing newline.
WORKSPACE_KEY_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")

workspace_partitions = DynamicPartitionsDefinition(name=WORKSPACE_PARTITIONS_NAME)


class InvalidWorkspaceId(ValueError):
    pass


def validate_workspace_id(value: str) -> str:
    """Dagster validates no partition keys; ours must avoid the UI's range syntax and tag-unsafe
    characters, so they are lowercase slugs of at most 63 characters."""
    if not isinstance(value, str) or not WORKSPACE_KEY_PATTERN.fullmatch(value):
        raise InvalidWorkspaceId(
            f"invalid workspace id {value!r}: use 1-63 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return value
