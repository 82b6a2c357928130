"""The OpenAPI schema and its browsable docs map the whole API, so they need a sign-in or a token."""
import json

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.crm_plugin.factories import AccountOwnerFactory

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_get_neither_schema_nor_docs(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 401
    assert json.loads(schema.content)["detail"] == "Authentication credentials were not provided."
    assert client.get("/api/schema/").status_code == 401  # the default YAML too
    docs = client.get("/api/docs/")
    assert docs.status_code == 302 and docs["Location"].startswith(reverse("login"))


def test_signed_in_users_get_schema_and_docs(client):
    client.force_login(AccountOwnerFactory().user)
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_a_token_is_enough_for_the_schema():
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=AccountOwnerFactory().user).key}")
    assert api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").status_code == 200


def test_the_docs_load_their_assets_from_this_server_not_a_cdn(client, django_user_model):
    user = django_user_model.objects.create_user("reader", password="x")
    client.force_login(user)
    page = client.get("/api/docs/").content.decode()
    assert "cdn.jsdelivr.net" not in page and "unpkg.com" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert {"/api/customers/", "/api/interventions/", "/api/interventions/{id}/outcome/"} <= set(schema["paths"])
    created = schema["paths"]["/api/events/"]["post"]["responses"]["201"]
    assert "The whole batch is stored" in created["description"]
