"""POST /api/events/: token auth, all or nothing, per-row errors, and the OpenAPI schema."""
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from crm_plugin.models import Event
from tests.crm_plugin.factories import UserFactory

pytestmark = pytest.mark.django_db

ORDER = {"customer_id": "C1", "kind": "order", "occurred_at": "2026-11-02T10:15:00Z", "amount": "45.00"}


@pytest.fixture
def client():
    token = Token.objects.create(user=UserFactory())
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return api


def test_needs_authentication():
    response = APIClient().post("/api/events/", {"events": [ORDER]}, format="json")
    assert response.status_code == 401
    assert Event.objects.count() == 0


def test_imports_a_batch_idempotently(client):
    response = client.post("/api/events/", {"events": [ORDER, {**ORDER, "kind": "visit", "amount": None}]}, format="json")
    assert response.status_code == 201
    assert response.json() == {"rows": 2, "added": 2, "skipped": 0, "customers_created": 1}
    again = client.post("/api/events/", {"events": [ORDER]}, format="json")
    assert again.json()["added"] == 0
    assert Event.objects.count() == 2


def test_per_row_errors_and_nothing_written(client):
    response = client.post("/api/events/", {"events": [ORDER, {**ORDER, "occurred_at": "yesterday"},
                                                       {**ORDER, "kind": "fax"}]}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert [(e["row"], e["field"]) for e in body["errors"]] == [(2, "occurred_at"), (3, "kind")]
    assert "nothing was imported" in body["detail"]
    assert Event.objects.count() == 0


def test_missing_events_key(client):
    response = client.post("/api/events/", {"rows": []}, format="json")
    assert response.status_code == 400
    assert "non-empty list" in response.json()["detail"]
    assert response.json()["errors"][0]["field"] == "events"


def test_a_signed_in_session_is_enough():
    user = UserFactory()
    api = APIClient()
    assert api.login(username=user.username, password="pass-word-123")
    response = api.post("/api/events/", {"events": [ORDER]}, format="json")
    assert response.status_code == 201
    assert Event.objects.count() == 1


def test_wrong_token_is_refused():
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert api.post("/api/events/", {"events": [ORDER]}, format="json").status_code == 401


def test_schema_publishes_the_endpoint(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert "post" in schema["paths"]["/api/events/"]
    components = schema["components"]["schemas"]
    assert {"EventBatchIn", "EventIn", "EventBatchOut", "EventBatchErrors"} <= set(components)
    assert set(components["EventIn"]["required"]) == {"customer_id", "kind", "occurred_at"}
    post = schema["paths"]["/api/events/"]["post"]
    assert {"201", "400"} <= set(post["responses"])


def test_batch_over_the_cap_is_refused_whole(client):
    response = client.post("/api/events/", {"events": [ORDER] * 10_001}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [{"row": None, "field": "events",
                                          "message": "10,001 events in one request; send at most 10,000 per request."}]
    assert Event.objects.count() == 0


def test_a_body_that_is_not_json_gets_the_same_error_shape(client):
    response = client.post("/api/events/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "events"
    assert "JSON parse error" in response.json()["detail"]
