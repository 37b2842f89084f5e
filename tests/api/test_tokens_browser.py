"""Customer tokens from a real browser: headless Chromium on a page of an allowed origin reads
recommendations and posts events through CORS preflights; the same calls from a page of another
origin are stopped by the browser (the session's one Chromium: `browser` in tests/conftest.py)."""

from __future__ import annotations

import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from app.config import Settings
from app.main import create_app
from tests.api.test_tokens import NEW, _keys, readme_token
from tests.faults.servers import free_port

FETCH = """
const [url, token, body, done] = arguments;
const init = {headers: {Authorization: "Bearer " + token}};
if (body !== null) {
  init.method = "POST";
  init.headers["Content-Type"] = "application/json";
  init.body = JSON.stringify(body);
}
fetch(url, init)
  .then(r => r.json().then(json => done({status: r.status, body: json})))
  .catch(e => done({error: String(e)}));
"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<!doctype html><title>shop</title><p>a shop page</p>")

    def log_message(self, *_: object) -> None:
        pass


def _page_server() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_a_page_of_an_allowed_origin_and_one_of_another(browser, tmp_path, sqlite_template):
    import uvicorn

    allowed_page, allowed = _page_server()
    foreign_page, foreign = _page_server()
    database = tmp_path / "tastemaker.db"
    shutil.copy(sqlite_template, database)
    settings = Settings(
        database_url=f"sqlite:///{database}",
        model_dir=Path(tmp_path / "models"),
        api_keys=_keys(),
        token_secrets=[{**NEW, "cors_origins": [allowed]}],
        access_log=False,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.05)
        api = f"http://127.0.0.1:{port}"
        token = readme_token(NEW["secret"], NEW["kid"], "c1")
        event = {"events": [{"user_id": "c1", "item_id": "i1", "type": "view"}]}

        browser.get(allowed)
        read = browser.execute_async_script(FETCH, f"{api}/recommend/c1", token, None)
        assert read.get("status") == 200, read
        assert "items" in read["body"]
        posted = browser.execute_async_script(FETCH, f"{api}/events", token, event)
        assert posted.get("status") == 200 and posted["body"]["accepted"] == 1, posted
        # Errors reach the page too, with their reason.
        other = browser.execute_async_script(FETCH, f"{api}/recommend/c2", token, None)
        assert other.get("status") == 403 and other["body"]["error"] == "wrong_customer", other

        browser.get(foreign)
        stopped = browser.execute_async_script(FETCH, f"{api}/recommend/c1", token, None)
        assert "error" in stopped and "status" not in stopped, stopped
        stopped = browser.execute_async_script(FETCH, f"{api}/events", token, event)
        assert "error" in stopped, stopped
    finally:
        # The refusals above are logged in the console on purpose: the session's browser is
        # shared, so they are read off here, not left for the next test's console check.
        browser.get_log("browser")
        server.should_exit = True
        thread.join(10)
        allowed_page.shutdown()
        foreign_page.shutdown()
