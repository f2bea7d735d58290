"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), with their
scripts, styles and icon served by the bridge itself.

FastAPI's own pages load them from a CDN and stay blank without internet; these take them from
the pinned ``fastapi-offline`` package's ``static`` folder (only its files are used, not its app
class), so an installed bridge serves working docs offline, with no ``node_modules``. The app is
built with ``docs_url=None, redoc_url=None`` and this module adds the pages back, the way FastAPI
documents for self-hosted assets.
"""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_UI_URL: Final = "/docs"
REDOC_URL: Final = "/redoc"
ASSETS_URL: Final = "/docs/assets"
ASSETS_PACKAGE: Final = ("fastapi_offline", "static")
"""The package folder holding ``swagger-ui-bundle.js``, ``swagger-ui.css``,
``redoc.standalone.js`` and ``favicon.png``."""


def install(app: FastAPI) -> None:
    """Serves Swagger UI at ``/docs``, ReDoc at ``/redoc`` and their assets under
    ``/docs/assets``, all reading the app's OpenAPI schema.

    Raises:
        ValueError: the app has no OpenAPI schema to show (``openapi_url=None``).
    """
    openapi_url = app.openapi_url
    if openapi_url is None:
        raise ValueError("the docs pages show the OpenAPI schema: keep the app's openapi_url")
    app.mount(ASSETS_URL, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")

    @app.get(SWAGGER_UI_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root_path(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = _root_path(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )


def _root_path(request: Request) -> str:
    """The prefix a proxy serves the app under (``--root-path``), as FastAPI's own pages use."""
    return str(request.scope.get("root_path", "")).rstrip("/")
