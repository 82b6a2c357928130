"""The read and retention-action endpoints: the CRM's visibility rules, paginated, filters."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from crm_plugin.models import Intervention
from tests.crm_plugin.factories import AccountOwnerFactory, InterventionFactory, ModelVersionFactory, UserFactory
from tests.crm_plugin.views.builders import scored_customer

pytestmark = pytest.mark.django_db


@pytest.fixture
def book():
    version = ModelVersionFactory()
    ana = AccountOwnerFactory(user=UserFactory(username="ana"), name="Ana", email="ana@shop.example")
    ben = AccountOwnerFactory(user=UserFactory(username="ben"), name="Ben", email="ben@shop.example")
    maria = AccountOwnerFactory(user=UserFactory(username="maria"), name="Maria", is_manager=True)
    mine = scored_customer(owner=ana, name="Mine", probabilities=[0.8], version=version)
    calm = scored_customer(owner=ana, name="Calm", probabilities=[0.1], version=version)
    theirs = scored_customer(owner=ben, name="Theirs", probabilities=[0.9], version=version)
    return {"ana": ana, "ben": ben, "maria": maria, "mine": mine, "calm": calm, "theirs": theirs}


def client_for(owner) -> APIClient:
    client = APIClient()
    client.force_authenticate(owner.user)
    return client


def test_an_account_manager_lists_only_their_own_customers_with_score_stage_and_reasons(book):
    body = client_for(book["ana"]).get("/api/customers/").json()
    assert body["count"] == 2 and {c["name"] for c in body["results"]} == {"Mine", "Calm"}
    mine = next(c for c in body["results"] if c["name"] == "Mine")
    assert (mine["band"], mine["stage"], mine["owner"]) == ("high", "at_risk", "ana@shop.example")
    assert mine["reasons"][0] == "No order for 64 days; usually orders every 20 days"


def test_filters_by_band_stage_and_owner(book):
    manager = client_for(book["maria"])
    assert [c["name"] for c in manager.get("/api/customers/", {"band": "high"}).json()["results"]] == ["Mine", "Theirs"]
    assert [c["name"] for c in manager.get("/api/customers/", {"stage": "active"}).json()["results"]] == ["Calm"]
    assert [c["name"] for c in manager.get("/api/customers/", {"owner": "ben@shop.example"}).json()["results"]] == ["Theirs"]
    assert manager.get("/api/customers/", {"band": "purple"}).status_code == 400


def test_an_account_manager_cannot_read_another_owners_customer_or_interventions(book):
    ana = client_for(book["ana"])
    assert ana.get(f"/api/customers/{book['theirs'].pk}/").status_code == 403
    InterventionFactory(customer=book["theirs"], note="secret")
    assert "secret" not in ana.get("/api/interventions/").content.decode()
    assert client_for(book["maria"]).get(f"/api/customers/{book['theirs'].pk}/").status_code == 200


def test_log_an_action_with_its_outcome_and_set_an_outcome_later(book):
    ana = client_for(book["ana"])
    response = ana.post("/api/interventions/", {"customer": book["mine"].pk, "action": "call", "outcome": "retained"},
                        format="json")
    assert response.status_code == 201 and response.json()["outcome"] == "retained"
    created = ana.post("/api/interventions/", {"customer": book["mine"].pk, "action": "email"}, format="json").json()
    done = ana.post(f"/api/interventions/{created['id']}/outcome/", {"outcome": "churned"}, format="json")
    assert done.status_code == 200 and done.json()["outcome"] == "churned"
    bad = ana.post("/api/interventions/", {"customer": book["mine"].pk, "action": "dance"}, format="json")
    assert bad.status_code == 400 and "Unknown action" in bad.content.decode()


def test_an_account_manager_cannot_change_another_owners_customers(book):
    ana = client_for(book["ana"])
    theirs = InterventionFactory(customer=book["theirs"])
    assert ana.post("/api/interventions/", {"customer": book["theirs"].pk, "action": "call"},
                    format="json").status_code == 403
    assert ana.post(f"/api/interventions/{theirs.pk}/outcome/", {"outcome": "retained"}, format="json").status_code == 403
    assert Intervention.objects.filter(customer=book["theirs"]).count() == 1
    theirs.refresh_from_db()
    assert theirs.outcome == ""
