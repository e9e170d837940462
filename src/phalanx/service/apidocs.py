"""The API's documentation page, `/docs`: Swagger UI from files installed
with phalanx (the fastapi-offline package ships them), so it works with no
network, under the same Content-Security-Policy as every other page (its
start script is a file of its own: the policy runs no inline script)."""

from __future__ import annotations

from html import escape
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from phalanx.service.web.render import SECURITY_HEADERS

DOCS = "/docs"
ASSETS = "/docs/assets"

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} API</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" href="{assets}/favicon.png">
</head>
<body>
<div id="swagger-ui" data-openapi="{openapi}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{root}{docs}/start.js"></script>
</body>
</html>
"""

# No validator badge: Swagger UI would fetch it from validator.swagger.io.
_START = """\
const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.openapi,
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
"""


def assets_folder() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def add_api_docs(app: FastAPI) -> None:
    """`/docs` on `app` (made with `docs_url=None, redoc_url=None`)."""
    app.mount(ASSETS, StaticFiles(directory=assets_folder()), name="api-docs-assets")

    @app.get(DOCS, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = _PAGE.format(
            title=escape(app.title),
            assets=escape(f"{root}{ASSETS}"),
            openapi=escape(f"{root}{app.openapi_url}"),
            root=escape(root),
            docs=DOCS,
        )
        return HTMLResponse(page, headers=SECURITY_HEADERS)

    @app.get(f"{DOCS}/start.js", include_in_schema=False)
    async def start() -> Response:
        return Response(_START, media_type="text/javascript", headers=SECURITY_HEADERS)
