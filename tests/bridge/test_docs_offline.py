"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) work without internet: each page references only
assets the bridge serves itself (from the pinned ``fastapi-offline`` package), and each of those
is served with its content type."""

from __future__ import annotations

import re
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from playwright.sync_api import Route, sync_playwright

from bridge.api.app import create_app
from bridge.settings import Settings
from bridge.testing.processes import free_port

from .conftest import Api
from .fakes import FakeLicenseView

CHROMIUM = Path("/usr/bin/chromium")
JAVASCRIPT = {"text/javascript", "application/javascript"}  # mimetypes' answer varies by system
PAGES = {
    "/docs": {
        ("link", "href", "/docs/assets/swagger-ui.css"),
        ("link", "href", "/docs/assets/favicon.png"),
        ("script", "src", "/docs/assets/swagger-ui-bundle.js"),
    },
    "/redoc": {
        ("link", "href", "/docs/assets/favicon.png"),
        ("script", "src", "/docs/assets/redoc.standalone.js"),
    },
}
ASSET_TYPES = {
    "/docs/assets/swagger-ui.css": {"text/css"},
    "/docs/assets/favicon.png": {"image/png"},
    "/docs/assets/swagger-ui-bundle.js": JAVASCRIPT,
    "/docs/assets/redoc.standalone.js": JAVASCRIPT,
}


class _References(HTMLParser):
    """Every ``src`` and ``href`` of a page, as (tag, attribute, URL)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: set[tuple[str, str, str]] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value is not None:
                self.found.add((tag, name, value))


def _references(html: str) -> set[tuple[str, str, str]]:
    parser = _References()
    parser.feed(html)
    return parser.found


@pytest.mark.parametrize("page", sorted(PAGES))
def test_the_docs_pages_reference_only_assets_the_bridge_serves(api: Api, page: str) -> None:
    response = api.client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert _references(response.text) == PAGES[page]
    assert re.findall(r"https?://|//[a-z]", response.text) == []  # no other host, not even in JS
    assert "'/openapi.json'" in response.text or 'spec-url="/openapi.json"' in response.text


@pytest.mark.parametrize("asset", sorted(ASSET_TYPES))
def test_each_docs_asset_is_served_with_its_content_type(api: Api, asset: str) -> None:
    response = api.client.get(asset)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] in ASSET_TYPES[asset]
    assert len(response.content) > 1_000


def test_the_assets_are_swagger_ui_5_and_redoc_2(api: Api) -> None:
    """Swagger UI 5 reads OpenAPI 3.1, the version FastAPI writes (4 shows a blank error)."""
    swagger = api.client.get("/docs/assets/swagger-ui-bundle.js").text
    assert re.search(r'PACKAGE_VERSION:"5\.\d+\.\d+"', swagger)
    assert "SwaggerUIBundle" in swagger
    redoc = api.client.get("/docs/assets/redoc.standalone.js").text
    assert re.search(r'"2\.\d+\.\d+"', redoc)
    assert "Redoc" in redoc
    assert api.client.get("/openapi.json").json()["openapi"].startswith("3.1.")


def test_an_asset_the_package_does_not_ship_is_404(api: Api) -> None:
    assert api.client.get("/docs/assets/swagger-ui-bundle.js.map").status_code == 404


def test_the_openapi_schema_is_served_without_the_docs_pages(api: Api) -> None:
    response = api.client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "Twin Bridge"
    assert "/v1/usage-events" in schema["paths"]
    assert not [path for path in schema["paths"] if path.startswith(("/docs", "/redoc"))]


def test_behind_a_proxy_prefix_the_pages_point_under_it(settings: Settings) -> None:
    app = create_app(settings, chain=FakeLicenseView())
    with TestClient(app, root_path="/bridge") as client:
        page = client.get("/docs").text
    assert _references(page) == {
        (tag, attribute, "/bridge" + url) for tag, attribute, url in PAGES["/docs"]
    }
    assert "url: '/bridge/openapi.json'" in page


@pytest.mark.integration
def test_swagger_ui_renders_every_operation_in_chromium_with_no_other_host(
    settings: Settings,
) -> None:
    """Headless Chromium (Debian's) with every request to another host refused, as offline:
    Swagger UI shows each operation, ReDoc its title."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    app = create_app(settings, chain=FakeLicenseView())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    origin = f"http://127.0.0.1:{port}"
    try:
        started_by = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "the API stopped while starting"
            assert time.monotonic() < started_by, "the API did not start in 10 s"
            time.sleep(0.05)
        operations = sum(len(methods) for methods in app.openapi()["paths"].values())
        elsewhere: list[str] = []

        def offline(route: Route) -> None:
            if route.request.url.startswith(origin + "/"):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=["--no-sandbox", "--disable-dev-shm-usage"],
            )
            try:
                page = browser.new_page()
                page.route("**/*", offline)
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(f"{origin}/docs")
                page.wait_for_selector(".opblock", timeout=30_000)
                rendered = page.locator(".opblock").count()
                title = page.locator(".info .title").first.inner_text()
                from_docs = list(elsewhere)
                page.goto(f"{origin}/redoc")
                page.wait_for_selector("h1", timeout=30_000)
                redoc_title = page.locator("h1").first.inner_text()
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert (rendered, from_docs, errors) == (operations, [], [])
    # ReDoc's sidebar credit is an image from Redocly's CDN: offline it is only missing.
    assert elsewhere == ["https://cdn.redoc.ly/redoc/logo-mini.svg"]
    assert title.startswith("Twin Bridge")
    assert redoc_title == f"Twin Bridge ({app.version})"
