"""Wire-faithful local simulators of the vendor APIs, served by one process."""

from .app import build_app
from .server import start_in_thread

__all__ = ["build_app", "start_in_thread"]
