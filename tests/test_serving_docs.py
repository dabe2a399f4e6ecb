"""The API's documentation pages work offline: every script, style and icon they load comes from the app itself."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from leadscore.serving.app import create_app
from leadscore.serving.settings import ServingSettings


class References(HTMLParser):
    """Every ``src=`` and ``href=`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.extend(value for name, value in attrs if name in ("src", "href") and value)


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.found


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """The app without its lifespan: the pages need no model."""
    settings = ServingSettings(home=tmp_path_factory.mktemp("docs"), poll_seconds=0)
    return TestClient(create_app(settings), base_url="http://leadscore.test")


@pytest.mark.parametrize(("page", "script"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")])
def test_each_asset_a_docs_page_references_is_served_by_the_app(client: TestClient, page: str, script: str) -> None:
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    found = references(response.text)
    assert any(ref.endswith(script) for ref in found), found
    for ref in found:
        url = urljoin(f"http://leadscore.test{page}", ref)
        assert urlsplit(url).netloc == "leadscore.test", f"{page} loads {ref} from another host"
        asset = client.get(url)
        assert asset.status_code == 200 and asset.content, ref
    # The page's script loads the app's own document, and names no other host.
    (document,) = re.findall(r"url: '([^']+)'|spec-url=\"([^\"]+)\"", response.text)
    assert client.get("".join(document)).json()["paths"]["/v1/score"]
    assert not re.findall(r"https?://", response.text), response.text


def test_swagger_ui_sends_the_document_to_no_validator(client: TestClient) -> None:
    assert '"validatorUrl": null' in client.get("/docs").text


def test_the_docs_pages_load_their_document_and_assets_behind_a_path_prefix(tmp_path: Path) -> None:
    settings = ServingSettings(home=tmp_path, poll_seconds=0)
    with TestClient(create_app(settings), root_path="/api") as prefixed:
        page = prefixed.get("/api/docs").text
        assert "'/api/openapi.json'" in page or '"/api/openapi.json"' in page
        for ref in references(page):
            assert ref.startswith("/api/"), ref
            assert prefixed.get(ref).status_code == 200, ref
