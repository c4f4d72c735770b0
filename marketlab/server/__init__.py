"""A FastAPI server over a running Lab: REST and a WebSocket, for dashboards and programs."""

from marketlab.server.app import PREFIX, create_app

__all__ = ["PREFIX", "create_app"]
