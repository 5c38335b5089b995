"""The vendors one sandbox process serves. A new vendor is one module plus one line here."""

from __future__ import annotations

from .core import Vendor
from .hubspot import HubSpot
from .salesforce import Salesforce

VENDOR_CLASSES: list[type[Vendor]] = [
    HubSpot,
    Salesforce,
]
