"""The vendors one sandbox process serves. A new vendor is one module plus one line here."""

from __future__ import annotations

from .core import Vendor
from .fireflies import Fireflies
from .gong import Gong
from .google_drive import GoogleDrive
from .hubspot import HubSpot
from .monday import Monday
from .salesforce import Salesforce

VENDOR_CLASSES: list[type[Vendor]] = [
    HubSpot,
    Salesforce,
    Gong,
    Monday,
    Fireflies,
    GoogleDrive,
]
