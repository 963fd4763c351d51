"""The predictions endpoint (POST /api/v1/predictions/) as the ingest tests post to it."""

from models_registry.serving import serving_model

URL = "/api/v1/predictions/"


def post(client, payload, url=URL):
    return client.post(url, payload, format="json")


def expected_margin(model_version, payload) -> float:
    serving = serving_model(model_version)
    values = {name: (entry or {}).get("value") for name, entry in payload["features"].items()}
    return float(serving.predict_margin(serving.encode(values)[None, :])[0])


def assert_error(response, status_code: int, code: str, field: str) -> dict:
    assert response.status_code == status_code, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == code, body
    assert field in body["fields"], body
    assert body["detail"]
    return body
