"""The dashboard in headless Chromium against a served, trained demo shop.

Every figure the page draws is compared with what the public API answers for the same key:
chart data is read back from the page's Chart.js instances, tables from the DOM.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.dashboard.conftest import ADMIN_KEY, READ_KEY, SHOP, Served

pytestmark = pytest.mark.usefixtures("served", "browser")

SEGMENT_COUNTS = """
const chart = Chart.getChart(document.getElementById(arguments[0]));
return chart ? chart.data.datasets.map((d) => [d.segmentId ?? d.label, d.data.length]) : null;
"""
CHART_DATA = """
const chart = Chart.getChart(document.getElementById(arguments[0]));
return chart ? chart.data.datasets.map((d) => d.data) : null;
"""


def _wait(driver, condition, timeout: float = 20.0, message: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d), message)


def _find(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def _find_all(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def _fresh(driver, served: Served) -> None:
    """The page in a tab that has no key yet."""
    driver.get(f"{served.url}/dashboard")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{served.url}/dashboard")
    _wait(driver, lambda d: _find(d, "#key-input") == d.switch_to.active_element)


def _sign_in(driver, served: Served, key: str = ADMIN_KEY) -> None:
    _fresh(driver, served)
    _find(driver, "#key-input").send_keys(key + "\n")


def _signed_in(driver, served: Served) -> None:
    _sign_in(driver, served)
    _wait(driver, lambda d: _find(d, "#app").is_displayed(), message="the views did not open")


def _tab(driver, name: str) -> None:
    _find(driver, f"#tab-{name}").click()
    _wait(driver, lambda d: _find(d, f"#view-{name}").is_displayed())


def _shot(driver, artifacts: Path, name: str) -> None:
    """A screenshot of the whole page (the window grows to its height for the shot)."""
    path = artifacts / f"{name}.png"
    size = driver.get_window_size()
    width, height = size["width"], size["height"]
    full = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(full + 140, height), 4000))
    try:
        assert driver.save_screenshot(str(path)), path
    finally:
        driver.set_window_size(width, height)
    assert path.stat().st_size > 10_000, f"{path} looks empty"


def _no_page_errors(driver) -> None:
    """No script error and no Content-Security-Policy violation in the console."""
    bad = [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE"
        and "Failed to load resource" not in entry["message"]  # refused keys, unknown ids
    ]
    assert not bad, bad


def test_the_page_needs_no_key_but_shows_only_the_key_prompt(served, browser, artifacts):
    page = httpx.get(f"{served.url}/dashboard")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    asset = httpx.get(f"{served.url}/dashboard/static/vendor/chart.umd.min.js")
    assert asset.status_code == 200 and "Chart.js v4" in asset.text[:200]

    _fresh(browser, served)
    assert _find(browser, "#key-prompt").is_displayed()
    assert not _find(browser, "#app").is_displayed()
    assert browser.execute_script("return sessionStorage.length") == 0
    _shot(browser, artifacts, "0-key-prompt")

    # A key without the admin scope is refused and not kept.
    _find(browser, "#key-input").send_keys(READ_KEY + "\n")
    _wait(browser, lambda d: "not an admin key" in _find(d, "#key-error").text)
    assert not _find(browser, "#app").is_displayed()
    assert browser.execute_script("return sessionStorage.length") == 0
    _no_page_errors(browser)


def test_the_key_is_kept_in_session_storage_only(served, browser):
    _signed_in(browser, served)
    assert browser.execute_script("return Object.values(sessionStorage)") == [ADMIN_KEY]
    assert browser.execute_script("return localStorage.length") == 0
    assert ADMIN_KEY not in browser.current_url
    browser.refresh()  # the tab remembers it
    _wait(browser, lambda d: _find(d, "#app").is_displayed())
    _find(browser, "#forget-key").click()
    _wait(browser, lambda d: _find(d, "#key-prompt").is_displayed())
    assert browser.execute_script("return sessionStorage.length") == 0


def _wait_for_map(driver, algorithm: str, sizes: dict[int, int]) -> None:
    _wait(
        driver,
        lambda d: dict(d.execute_script(SEGMENT_COUNTS, "segment-map") or []) == sizes,
        message=f"the {algorithm} map does not show {sizes}",
    )


def test_segments_view_draws_what_the_api_answers(served, browser, artifacts):
    segments = served.api.get("/segments").json()
    _signed_in(browser, served)
    for algorithm in ("kmeans", "dbscan"):
        answer = served.api.get("/segments/map", params={"algorithm": algorithm}).json()
        on_map = Counter(p["segment_id"] for p in answer["points"])
        # The sample is everyone here, so the map shows every purchaser of every segment.
        assert answer["sampled"] == answer["customers"] == len(SHOP.users)
        assert dict(on_map) == {
            s["segment_id"]: s["count"] for s in answer["segments"] if s["segment_id"] != -1
        }
        if algorithm == "dbscan":
            _find(browser, 'input[name="algorithm"][value="dbscan"]').click()
        _wait_for_map(browser, algorithm, dict(on_map))

        # RFM grid: every cell as the API counts it, and they add up to the purchasers mapped.
        def grid(d):
            return {
                (int(c.get_attribute("data-r")), int(c.get_attribute("data-fm"))): int(c.text)
                for c in _find_all(d, "#rfm-grid td")
            }

        expected = {
            (r + 1, fm + 1): n
            for r, row in enumerate(answer["rfm_grid"])
            for fm, n in enumerate(row)
        }
        _wait(browser, lambda d, want=expected: grid(d) == want, message="RFM grid")
        assert sum(expected.values()) == len(answer["points"])

        # A card per segment with the API's sizes and labels.
        profiles = (
            segments["segments"]
            if segments["algorithm"] == algorithm
            else segments["other_algorithm"]["segments"]
        )
        cards = {
            int(card.get_attribute("data-segment-id")): (
                card.find_element("css selector", "h3").text,
                int(card.find_element("css selector", ".size").text.replace(",", "")),
            )
            for card in _find_all(browser, "#segment-cards .card")
        }
        assert cards == {p["segment_id"]: (p["label"], p["size"]) for p in profiles}

        # The churn-risk mix.
        churn = segments["groups"]["churn_risk"]
        assert browser.execute_script(CHART_DATA, "churn-chart") == [
            [churn["high"], churn["medium"], churn["low"]]
        ]
        _shot(browser, artifacts, f"1-segments-{algorithm}")
    _no_page_errors(browser)


def test_hovering_the_map_names_the_customer_and_their_rfm(served, browser):
    _signed_in(browser, served)
    _wait(browser, lambda d: d.execute_script(SEGMENT_COUNTS, "segment-map"))
    label = browser.execute_script(
        """
        const chart = Chart.getChart(document.getElementById("segment-map"));
        const point = chart.getDatasetMeta(0).data[0];
        chart.tooltip.setActiveElements([{datasetIndex: 0, index: 0}], {x: point.x, y: point.y});
        chart.update();
        return chart.tooltip.body.map((b) => b.lines.join(" ")).join(" ");
        """
    )
    first = browser.execute_script(CHART_DATA, "segment-map")[0][0]
    assert first["user_id"] in label
    assert f"R{first['r']} F{first['f']} M{first['m']}" in label


def _number(driver, css: str) -> float | None:
    """The number an element shows, or None while it shows none."""
    try:
        return float(_find(driver, css).text.replace(",", ""))
    except ValueError:
        return None


def _buyer() -> str:
    purchases = Counter(
        u for u, t in zip(SHOP.events.user_id, SHOP.events.type, strict=True) if t == "purchase"
    )
    return next(u for u, n in sorted(purchases.items()) if n >= 5)


def test_try_a_customer_shows_their_segment_and_recommendations(served, browser, artifacts):
    user = _buyer()
    segment = served.api.get(f"/segment/{user}").json()
    _signed_in(browser, served)
    _tab(browser, "customer")
    _find(browser, "#customer-id").send_keys(user + "\n")
    _wait(browser, lambda d: _find_all(d, "#customer-segment"), message="no answer")
    assert _find(browser, "#customer-segment").text == segment["segment"]["label"]
    rfm = segment["rfm"]
    assert _find(browser, "#customer-rfm").text.startswith(f"R{rfm['r']} F{rfm['f']} M{rfm['m']}")
    events = served.api.get(f"/users/{user}/events", params={"limit": 10}).json()
    assert len(_find_all(browser, "#customer-events tbody tr")) == len(events) == 10
    for placement in ("explore", "buy_again", "home"):
        answer = served.api.get(
            f"/recommend/{user}", params={"placement": placement, "n": 10}
        ).json()
        shown = [
            li.get_attribute("data-item")
            for li in _find_all(browser, f'[data-placement="{placement}"] li')
        ]
        assert shown == [item["item_id"] for item in answer["items"]], placement
        assert shown, placement
    reasons = " ".join(e.text for e in _find_all(browser, "[data-placement] .reason"))
    assert "similar to" in reasons

    item = answer["items"][0]["item_id"]
    _find(browser, "#item-id").send_keys(item + "\n")
    _wait(browser, lambda d: _find_all(d, "#similar-items li"), message="no similar items")
    similar = served.api.get(f"/items/{item}/similar", params={"n": 10}).json()
    assert [li.get_attribute("data-item") for li in _find_all(browser, "#similar-items li")] == [
        i["item_id"] for i in similar["items"]
    ]
    _shot(browser, artifacts, "3-try-a-customer")

    _find(browser, "#customer-id").clear()
    _find(browser, "#customer-id").send_keys("nobody-at-all\n")
    _wait(browser, lambda d: _find_all(d, "#customer-unknown"), message="unknown customer")
    _no_page_errors(browser)


def test_live_view_reads_the_service_metrics(served, browser, artifacts):
    _signed_in(browser, served)
    before = _find(browser, "#tab-live")
    events = [
        {"user_id": "live-visitor", "item_id": "i00001", "type": "view", "event_id": f"live-{i}"}
        for i in range(30)
    ]
    assert served.api.post("/events", json={"events": events}).json()["accepted"] == 30
    for _ in range(3):  # a few answers for the cache and the latency histogram
        served.api.get(f"/recommend/{_buyer()}")
    before.click()
    _wait(browser, lambda d: (_number(d, "#live-events-total") or 0) >= 30)
    served.api.post(
        "/events",
        json={"events": [{**e, "event_id": e["event_id"] + "-again"} for e in events]},
    )
    _wait(
        browser,
        lambda d: (_number(d, "#live-events") or 0) > 0,
        timeout=15,
        message="no events per minute",
    )
    assert _find(browser, "#live-hits").text.endswith("%")
    assert _find(browser, "#live-p99").text.endswith("ms")
    _wait(browser, lambda d: d.execute_script(CHART_DATA, "live-chart"), message="live chart")
    _shot(browser, artifacts, "4-live")
    _tab(browser, "segments")  # stops the polling
    _no_page_errors(browser)


def test_models_view_lists_versions_retrains_and_rolls_back(served, browser, artifacts):
    from selenium.webdriver.common.keys import Keys

    _signed_in(browser, served)
    # Keyboard: the arrow keys move between the tabs.
    _find(browser, "#tab-segments").send_keys(Keys.ARROW_RIGHT)
    _wait(browser, lambda d: _find(d, "#view-models").is_displayed())
    versions = served.api.get("/models").json()
    _wait(browser, lambda d: len(_find_all(d, "#versions tbody tr")) == len(versions))
    ndcg = browser.execute_script(CHART_DATA, "ndcg-chart")
    served_ndcg = [v["metrics"]["recommender"]["models"]["served"]["ndcg"] for v in versions]
    assert ndcg[0] == served_ndcg[::-1]
    rows = _find_all(browser, "#explore-metrics tbody tr")
    assert {r.get_attribute("data-model") for r in rows} == set(
        versions[0]["metrics"]["recommender"]["models"]
    )
    assert _find_all(browser, '#repeat-metrics tr[data-model="popularity"]')

    _find(browser, "#retrain").click()
    _wait(browser, lambda d: _find(d, "#retrain-status").text.startswith("Run"))
    _wait(
        browser,
        lambda d: _find(d, "#retrain-status").get_attribute("data-status") == "succeeded",
        timeout=120,
        message="the retrain did not succeed",
    )
    after = served.api.get("/models").json()
    assert len(after) == len(versions) + 1
    _wait(browser, lambda d: len(_find_all(d, "#versions tbody tr")) == len(after))
    _shot(browser, artifacts, "2-models")

    active = next(v["version"] for v in after if v["is_active"])
    other = next(v["version"] for v in after if not v["is_active"])
    button = _find(browser, f'[data-activate="{other}"]')
    button.click()  # dismissed: nothing changes
    browser.switch_to.alert.dismiss()
    assert next(v["version"] for v in served.api.get("/models").json() if v["is_active"]) == active
    _find(browser, f'[data-activate="{other}"]').click()
    browser.switch_to.alert.accept()
    _wait(browser, lambda d: _find_all(d, f'[data-activate="{active}"]'), message="not swapped")
    assert next(v["version"] for v in served.api.get("/models").json() if v["is_active"]) == other
    # Leave the service as the other tests expect it: serving the version that was active.
    served.api.post(f"/models/{active}/activate").raise_for_status()
    _wait(
        browser,
        lambda _: httpx.get(f"{served.url}/ready").json()["checks"]["model"]["version"] == active,
        message=f"version {active} is not served again",
    )
    _no_page_errors(browser)
