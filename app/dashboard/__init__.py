"""The dashboard: a page the service serves at /dashboard, which calls the public API with an
admin key the browser keeps in its session storage (see README, "Dashboard")."""

from app.dashboard.router import install, router

__all__ = ["install", "router"]
