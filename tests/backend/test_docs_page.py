"""``/docs`` (Swagger UI) and the OpenAPI document behind it, on a real REST server.

The page must work offline (its files are served by the REST server itself) and declare the bearer
token so that "Authorize" and "Try it out" work; the browser test drives Debian's Chromium.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Locator, Page, expect

from tests.backend.conftest import BackendFactory, Rest, Storage
from tests.helpers.browser import BrowserPage

HTTP_METHODS = ("get", "put", "post", "delete", "patch")

#: Operations the page must list (the document may hold more; the page must list those too).
KNOWN_OPERATIONS = {
    ("POST", "/simulation"),
    ("GET", "/simulation"),
    ("GET", "/simulation/{sim_id}"),
    ("GET", "/simulation/{sim_id}/state"),
    ("PUT", "/simulation/{sim_id}/state"),
    ("GET", "/version"),
    ("GET", "/health"),
}

#: Operations that need no token.
PUBLIC_OPERATIONS = {("GET", "/version"), ("GET", "/health")}


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """``(METHOD, path) -> operation`` of an OpenAPI document."""
    return {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def test_openapi_declares_bearer_auth_and_public_routes(start_backend: BackendFactory) -> None:
    backend = start_backend()
    anonymous = backend.rest.as_user(None)
    spec = anonymous.get("/openapi.json").json()

    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert spec["security"] == [{"bearerAuth": []}]
    ops = operations(spec)
    assert KNOWN_OPERATIONS <= set(ops)
    assert {key for key, op in ops.items() if op.get("security") == []} == PUBLIC_OPERATIONS
    # The operations still carry their schemas.
    simulation = {"$ref": "#/components/schemas/Simulation"}
    assert ops["GET", "/simulation/{sim_id}"]["responses"]["200"]["content"]["application/json"] == {
        "schema": simulation
    }
    assert "Simulation" in spec["components"]["schemas"]
    # Error answers, the default one included, are documented as the server sends them.
    api_error = {"schema": {"$ref": "#/components/schemas/ApiError"}}
    assert ops["GET", "/simulation"]["responses"]["401"]["content"]["application/json"] == api_error
    default = spec["components"]["responses"]["DEFAULT_ERROR"]["content"]["application/json"]
    assert default == api_error


def test_documented_security_matches_the_server(start_backend: BackendFactory) -> None:
    """Every operation the document protects answers 401 without a token; public ones answer 200."""
    backend = start_backend()
    sim_id = backend.rest.launch()["simulationID"]
    anonymous = backend.rest.as_user(None)
    bodies = {
        ("POST", "/simulation"): {"experimentID": "my_cloned_experiment"},
        ("PUT", "/simulation/{sim_id}/state"): {"state": "started"},
    }
    for (method, path), op in operations(anonymous.get("/openapi.json").json()).items():
        response = anonymous.request(method, path.format(sim_id=sim_id), json=bodies.get((method, path)))
        expected = 200 if op.get("security") == [] else 401
        assert response.status_code == expected, (method, path, response.text)


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


def operation(page: Page, method: str, path: str) -> Locator:
    """The block of one operation on the Swagger UI page."""
    return page.locator(
        f".opblock:has(.opblock-summary-method:text-is('{method}'))"
        f":has(.opblock-summary-path[data-path='{path}'])"
    )


def authorize(page: Page, token: str) -> None:
    """Enter ``token`` in the "Authorize" dialog."""
    page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".modal-ux")
    dialog.locator("input[aria-label='auth-bearer-value']").fill(token)
    dialog.locator(".auth-btn-wrapper button.authorize").click()
    dialog.locator("button.btn-done").click()


def test_docs_page_works_offline_and_tries_calls_with_a_token(
    start_backend: BackendFactory, storage: Storage, browser_page: BrowserPage
) -> None:
    backend = start_backend()
    rest: Rest = backend.rest
    sim_id = rest.launch()["simulationID"]
    spec = rest.as_user(None).get("/openapi.json").json()
    page = browser_page.page

    page.goto(backend.url + "/docs")

    for method, path in operations(spec):
        expect(operation(page, method, path)).to_have_count(1)
    # Protected operations show a lock; public ones do not.
    expect(operation(page, "GET", "/simulation").locator(".authorization__btn")).to_have_count(1)
    expect(operation(page, "GET", "/health").locator(".authorization__btn")).to_have_count(0)

    expect(page.locator(".auth-wrapper button.authorize")).to_be_visible()
    authorize(page, storage.alice)

    listing = operation(page, "GET", "/simulation")
    listing.locator(".opblock-summary").click()
    listing.locator("button.try-out__btn").click()
    with page.expect_response(lambda response: response.url == backend.url + "/simulation") as answer:
        listing.locator("button.execute").click()
    assert answer.value.status == 200
    assert answer.value.request.headers["authorization"] == f"Bearer {storage.alice}"
    assert [sim["simulationID"] for sim in answer.value.json()] == [sim_id]
    status = listing.locator(".live-responses-table td.response-col_status:not(.col_header)")
    expect(status).to_have_text("200")

    requested = browser_page.requests.urls()
    assert backend.url + "/openapi.json" in requested
    assert browser_page.requests.remote() == [], requested
