"""``/docs`` (Swagger UI) and the OpenAPI document behind it, on a real REST server."""

from __future__ import annotations

from typing import Any

from tests.backend.conftest import BackendFactory

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
