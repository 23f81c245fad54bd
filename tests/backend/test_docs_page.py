"""``/docs`` (Swagger UI) and the OpenAPI document behind it, on a real REST server."""

from __future__ import annotations

from tests.backend.conftest import BackendFactory


def test_docs_assets_are_served_locally(start_backend: BackendFactory) -> None:
    rest = start_backend().rest.as_user(None)
    page = rest.get("/docs")
    assert page.status_code == 200
    assert "http://" not in page.text and "https://" not in page.text
    for name in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        asset = rest.get(f"/docs/assets/{name}")
        assert asset.status_code == 200, name
        assert asset.content
    # The package's own files next to the distribution stay out of reach.
    assert rest.get("/docs/assets/%2e%2e/flask_swagger_ui.py").status_code == 404
    assert rest.get("/docs/assets/missing.js").status_code == 404
