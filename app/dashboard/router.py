"""``GET /dashboard``: the page's HTML, rendered on the server; its scripts, styles and the
vendored charting library are static files of this package (no CDN, works offline).

The page itself needs no key: it asks for one and then calls the public API with it. Its
Content-Security-Policy lets it run only its own scripts and talk only to this service.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from string import Template

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATE = HERE / "templates" / "dashboard.html"
STATIC_URL = "/dashboard/static"
# Chart.js sets canvas sizes through the CSSOM, which style-src does not govern.
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)


@cache
def _page() -> str:
    """The page with its asset URLs, which carry a digest of the files so that a browser
    never runs a stale script after an upgrade."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.read_bytes())
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        static=STATIC_URL, version=digest.hexdigest()[:12]
    )


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard_page() -> HTMLResponse:
    """The dashboard's page: a key prompt, then the views (their data comes from the API)."""
    return HTMLResponse(_page(), headers=HEADERS)


def install(app: FastAPI) -> None:
    """Serve the page at /dashboard and its files under /dashboard/static."""
    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="dashboard-static")
