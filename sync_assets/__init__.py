"""Connector recipes and the machinery that turns them into assets."""

from sync_assets import fireflies, gong, google_drive, hubspot, monday, salesforce
from sync_assets.recipe import Connector

CONNECTORS: tuple[Connector, ...] = (
    hubspot.CONNECTOR,
    salesforce.CONNECTOR,
    gong.CONNECTOR,
    monday.CONNECTOR,
    fireflies.CONNECTOR,
    google_drive.CONNECTOR,
)
CONNECTORS_BY_NAME: dict[str, Connector] = {c.name: c for c in CONNECTORS}
