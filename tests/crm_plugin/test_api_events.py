"""POST /api/events/: who may import, all or nothing, per-row errors, limits, and the OpenAPI schema."""
import json
import random

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from crm_plugin.models import Customer, Event, Intervention
from crm_plugin.api.integrations import integration_create
from tests.crm_plugin.factories import AccountOwnerFactory, CustomerFactory, InterventionFactory, UserFactory

pytestmark = pytest.mark.django_db

ORDER = {"customer_id": "C1", "kind": "order", "occurred_at": "2026-11-02T10:15:00Z", "amount": "45.00"}
FORBIDDEN = "Importing events needs an integration token"


def api_for(user) -> APIClient:
    token, _ = Token.objects.get_or_create(user=user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return api


@pytest.fixture
def client():
    """The shop's feed: an integration user's token, as `manage.py integration_create` makes it."""
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {integration_create(name='shop-feed').token}")
    return api


def post(api, events):
    return api.post("/api/events/", {"events": events}, format="json")


# --- who may import -----------------------------------------------------------------------


def test_needs_authentication():
    response = APIClient().post("/api/events/", {"events": [ORDER]}, format="json")
    assert response.status_code == 401
    assert Event.objects.count() == 0


def _no_profile():
    return UserFactory()


def _account_manager():
    return AccountOwnerFactory().user


def _manager():
    return AccountOwnerFactory(is_manager=True).user


def _staff():
    return UserFactory(is_staff=True)


@pytest.mark.parametrize("make_user", [_no_profile, _account_manager, _manager, _staff],
                         ids=["no-account-owner-profile", "account-manager", "manager", "staff"])
def test_people_cannot_import(make_user):
    response = post(api_for(make_user()), [ORDER])
    assert response.status_code == 403
    assert FORBIDDEN in response.json()["detail"]
    assert Event.objects.count() == 0 and Customer.objects.count() == 0


def test_integration_user_imports(client):
    response = post(client, [ORDER])
    assert response.status_code == 201
    assert response.json() == {"rows": 1, "added": 1, "updated": 0, "skipped": 0, "customers_created": 1,
                               "tickets_closed": 0, "coupons_redeemed": 0}


def test_a_signed_in_superuser_session_is_enough():
    admin = UserFactory(is_staff=True, is_superuser=True)
    api = APIClient()
    assert api.login(username=admin.username, password="pass-word-123")
    assert post(api, [ORDER]).status_code == 201
    assert Event.objects.count() == 1


def test_an_account_manager_cannot_take_over_a_customer_and_read_its_notes(client):
    """The attack: re-send a colleague's customer with your own email as owner, then open it in the CRM."""
    ana, ben = AccountOwnerFactory(), AccountOwnerFactory()
    customer = CustomerFactory(external_id="C77", owner=ben, name="Real Name", email="real@mail.example", segment="vip")
    InterventionFactory(customer=customer, note="Private: going through a divorce, be gentle")
    takeover = {**ORDER, "customer_id": "C77", "name": "Mine Now", "email": "x@evil.example", "segment": "bargain",
                "owner_email": ana.email}
    response = post(api_for(ana.user), [takeover])
    assert response.status_code == 403
    customer.refresh_from_db()
    assert (customer.owner, customer.name, customer.email, customer.segment) == (
        ben, "Real Name", "real@mail.example", "vip")
    crm = APIClient()
    crm.force_login(ana.user)
    page = crm.get(reverse("crm-customer", args=[customer.pk]))
    assert page.status_code == 403
    assert b"divorce" not in page.content


def test_wrong_token_is_refused():
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert api.post("/api/events/", {"events": [ORDER]}, format="json").status_code == 401


# --- source ids: re-sends, conflicts -------------------------------------------------------


def test_imports_a_batch_idempotently(client):
    response = client.post("/api/events/", {"events": [ORDER, {**ORDER, "kind": "visit", "amount": None}]}, format="json")
    assert response.status_code == 201
    assert response.json() == {"rows": 2, "added": 2, "updated": 0, "skipped": 0, "customers_created": 1,
                               "tickets_closed": 0, "coupons_redeemed": 0}
    again = client.post("/api/events/", {"events": [ORDER]}, format="json")
    assert again.json()["added"] == 0
    assert Event.objects.count() == 2


def test_a_source_id_cannot_be_claimed_for_another_customers_event(client):
    """Someone sends 'order-9' for C-other first; the real order-9 of C1 must not be dropped as a duplicate."""
    claimed = {**ORDER, "customer_id": "C-other", "source_id": "order-9"}
    assert post(client, [claimed]).status_code == 201
    real = {**ORDER, "source_id": "order-9"}
    response = post(client, [{**ORDER, "source_id": "order-8"}, real])
    assert response.status_code == 400
    assert response.json()["errors"] == [{
        "row": 2, "field": "source_id",
        "message": "'order-9' is already the id of a different stored event; a re-sent event must repeat it "
                   "exactly (same customer, time and content), a new event needs a new source_id"}]
    assert not Customer.objects.filter(external_id="C1").exists()  # all or nothing
    assert Event.objects.count() == 1


def test_a_re_sent_event_is_skipped_but_changed_content_is_a_conflict(client):
    order = {**ORDER, "source_id": "order-1"}
    assert post(client, [order]).json()["added"] == 1
    assert post(client, [order]).json() == {"rows": 1, "added": 0, "updated": 0, "skipped": 1,
                                           "customers_created": 0, "tickets_closed": 0, "coupons_redeemed": 0}
    changed = post(client, [{**order, "amount": "46.00"}])
    assert changed.status_code == 400
    assert changed.json()["errors"][0]["row"] == 1 and changed.json()["errors"][0]["field"] == "source_id"
    assert Event.objects.get().amount == 45


def test_content_ids_are_reserved(client):
    response = post(client, [{**ORDER, "source_id": "h:0123abcd:1"}])
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "source_id"
    assert "may not start with 'h:'" in response.json()["errors"][0]["message"]


def test_a_replayed_batch_does_not_undo_a_later_profile_change(client):
    """A retry of an old batch (its events already stored) changes nothing, owner included."""
    ana, ben = AccountOwnerFactory(), AccountOwnerFactory()
    old = {**ORDER, "source_id": "o-1", "email": "old@mail.example", "owner_email": ana.email}
    post(client, [old])
    newer = {**ORDER, "occurred_at": "2026-11-03T09:00:00Z", "source_id": "o-2", "email": "new@mail.example",
             "owner_email": ben.email}
    post(client, [newer])
    assert post(client, [old]).json()["added"] == 0
    customer = Customer.objects.get(external_id="C1")
    assert (customer.email, customer.owner) == ("new@mail.example", ben)


# --- bad input: always a 400 in one shape ----------------------------------------------------


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


TEXT_FIELDS = ["customer_id", "name", "email", "segment", "text", "source_id", "owner_email"]


def _with(field, value):
    event = {**ORDER, "kind": "review", "rating": 2}
    if field == "email" or field == "owner_email":
        value = f"{value}@mail.example"
    event[field] = value
    return event


@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_nul_character_in_a_text_field_is_a_400_naming_the_field(client, field):
    """PostgreSQL cannot store NUL: checked before the database sees it (a 500 otherwise)."""
    response = post(client, [ORDER, _with(field, "a\x00b")])
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert (error["row"], error["field"]) == (2, field)
    assert "contains a NUL character" in error["message"]
    assert Event.objects.count() == 0


@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_unpaired_surrogate_in_a_text_field_is_a_400_naming_the_field(client, field):
    raw = json.dumps({"events": [_with(field, "a\ud800b")]})  # json.dumps writes it as the escape \ud800
    assert "\\ud800" in raw
    response = client.post("/api/events/", raw, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert (error["row"], error["field"]) == (1, field)
    assert "unpaired surrogate (\\ud800)" in error["message"]


@pytest.mark.parametrize("attributes", [{"a\x00": "x"}, {"k": "a\x00"}, {"k": ["ok", {"deep": "\ud800"}]}],
                         ids=["nul-in-key", "nul-in-value", "surrogate-nested"])
def test_attributes_keys_and_values_are_checked_all_the_way_down(client, attributes):
    response = client.post("/api/events/", json.dumps({"events": [{**ORDER, "attributes": attributes}]}),
                           content_type="application/json")
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["field"] == "attributes"
    assert "NUL" in error["message"] or "surrogate" in error["message"]


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("customer_id", {"id": 1}, "must be text, not a JSON object"),
    ("name", ["Ada", "Lovelace"], "must be text, not a list"),
    ("text", True, "must be text, not true/false"),
    ("segment", 1.5, "must be text, not a number"),
    ("source_id", {"x": 1}, "must be text, not a JSON object"),
    ("owner_email", ["a@b.c"], "must be text, not a list"),
    ("amount", {"value": 1}, "must be a number, not a JSON object"),
    ("rating", [5], "must be a whole number, not a list"),
    ("attributes", ["shoes"], "must be a JSON object"),
])
def test_objects_and_lists_where_text_is_expected_are_refused_not_stored_as_reprs(client, field, value, expected):
    event = {**ORDER, "kind": "review", "rating": 2, field: value}
    response = post(client, [event])
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert (error["row"], error["field"]) == (1, field)
    assert expected in error["message"]
    assert Customer.objects.count() == 0


def test_unknown_field_with_an_unprintable_name_is_named_safely(client):
    response = client.post("/api/events/", json.dumps({"events": [{**ORDER, "x\ud800\x00": 1}]}),
                           content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "'x\\ud800\\x00'"


def test_json_nested_100000_deep_is_a_400(client):
    body = '{"events": [{"attributes": ' + "[" * 100_000 + "]" * 100_000 + "}]}"
    response = client.post("/api/events/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"] == [{"row": None, "field": "events",
                                          "message": "JSON parse error - nested too deeply; at most 32 levels"}]


def test_json_nested_below_the_recursion_limit_but_over_ours_is_a_400(client):
    body = '{"events": [{"attributes": {"a": ' + "[" * 500 + "]" * 500 + "}}]}"
    response = client.post("/api/events/", body, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


def test_attributes_nested_deeper_than_ten_levels_name_the_field(client):
    nested: dict = {"leaf": 1}
    for _ in range(10):
        nested = {"n": nested}
    response = post(client, [{**ORDER, "attributes": nested}])
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "attributes"
    assert "nests deeper than 10 levels" in response.json()["errors"][0]["message"]


def test_nan_is_not_json(client):
    response = client.post("/api/events/", '{"events": [{"customer_id": "C1", "kind": "order", '
                                           '"occurred_at": "2026-11-02", "amount": NaN}]}',
                           content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_a_body_that_is_not_json_gets_the_same_error_shape(client):
    response = client.post("/api/events/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "events"
    assert "JSON parse error" in response.json()["detail"]


def test_a_form_body_is_refused_as_unsupported(client):
    response = client.post("/api/events/", "events=1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert "Unsupported media type" in response.json()["detail"]


# --- size limits -------------------------------------------------------------------------------

WORDS = ("arrived late and the box was damaged so I had to call support twice before anyone answered "
         "the mug itself is lovely but the handle chipped after one week in the dishwasher refund please "
         "great price fast delivery will order again my daughter loves the colour sizes run small").split()


def _review_text(rng: random.Random) -> str:
    """A review of 1-2 KB, as real shops send them."""
    target = rng.randint(1024, 2048)
    words = rng.choices(WORDS, k=target // 4)  # words average 4-5 characters, so this is enough
    return " ".join(words)[:target]


def test_a_full_batch_of_10000_realistic_reviews_fits(client):
    rng = random.Random(7)
    events = [{"customer_id": f"C{i % 700:05d}", "kind": "review", "occurred_at": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}",
               "rating": 1 + i % 5, "text": _review_text(rng), "attributes": {"product": f"sku-{i % 300}"},
               "source_id": f"review-{i:06d}"} for i in range(10_000)]
    body = json.dumps({"events": events})
    assert len(body) > 15_000_000  # six times Django's 2.5 MB form limit, which refused it with an HTML page
    response = client.post("/api/events/", body, content_type="application/json")
    assert response.status_code == 201, response.content[:500]
    assert response.json() == {"rows": 10_000, "added": 10_000, "updated": 0, "skipped": 0,
                               "customers_created": 700, "tickets_closed": 0, "coupons_redeemed": 0}


def test_a_body_over_the_limit_is_a_json_400(client, settings):
    assert settings.API_MAX_BODY_BYTES == 32 * 1024 * 1024
    body = '{"events": [' + " " * (33 * 1024 * 1024) + "]}"
    response = client.post("/api/events/", body, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["errors"] == [{
        "row": None, "field": "events",
        "message": f"The request body is {len(body):,} bytes; the limit is 33,554,432 bytes (API_MAX_BODY_BYTES). "
                   "Send fewer events per request."}]
    assert Event.objects.count() == 0


def test_batch_over_the_cap_is_refused_whole(client):
    response = client.post("/api/events/", {"events": [ORDER] * 10_001}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [{"row": None, "field": "events",
                                          "message": "10,001 events in one request; send at most 10,000 per request."}]
    assert Event.objects.count() == 0


# --- schema ------------------------------------------------------------------------------------


def test_schema_publishes_the_endpoint(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert "post" in schema["paths"]["/api/events/"]
    components = schema["components"]["schemas"]
    assert {"EventBatchIn", "EventIn", "EventBatchOut", "EventBatchErrors"} <= set(components)
    assert set(components["EventIn"]["required"]) == {"customer_id", "kind", "occurred_at"}
    post_op = schema["paths"]["/api/events/"]["post"]
    assert {"201", "400", "403"} <= set(post_op["responses"])
    assert "integration" in post_op["description"]


def test_interventions_are_untouched_by_an_import(client):
    """Importing events for an existing customer leaves its notes and owner alone."""
    owner = AccountOwnerFactory()
    customer = CustomerFactory(external_id="C1", owner=owner)
    InterventionFactory(customer=customer)
    assert post(client, [ORDER]).status_code == 201
    customer.refresh_from_db()
    assert customer.owner == owner and Intervention.objects.filter(customer=customer).count() == 1


# --- when a ticket closed, when a coupon was redeemed -------------------------------------------


def test_closing_and_redemption_times_are_imported(client):
    response = post(client, [
        {"customer_id": "C1", "kind": "ticket", "occurred_at": "2026-03-01T09:00:00Z", "text": "refund late",
         "closed_at": "2026-03-03T17:00:00Z", "source_id": "t-1"},
        {"customer_id": "C1", "kind": "coupon", "occurred_at": "2026-03-01", "amount": "5",
         "attributes": {"code": "SAVE5"}, "redeemed_at": "2026-03-04", "source_id": "c-1"},
    ])
    assert response.status_code == 201, response.json()
    assert Event.objects.get(source_id="t-1").attributes == {"status": "closed", "closed_at": "2026-03-03T17:00:00+00:00"}
    assert Event.objects.get(source_id="c-1").attributes == {"code": "SAVE5", "redeemed": True,
                                                             "redeemed_at": "2026-03-04T00:00:00+00:00"}


def test_a_ticket_closed_before_it_opened_is_a_400_naming_the_row_and_field(client):
    response = post(client, [ORDER, {"customer_id": "C1", "kind": "ticket", "occurred_at": "2026-03-05T09:00:00Z",
                                     "closed_at": "2026-03-05T08:59:00Z"}])
    assert response.status_code == 400
    assert response.json()["errors"] == [{
        "row": 2, "field": "closed_at",
        "message": "'2026-03-05T08:59:00Z' is before the ticket was opened (occurred_at 2026-03-05 09:00:00 UTC)"}]
    assert Event.objects.count() == 0


def test_schema_documents_the_closing_and_redemption_times(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    fields = schema["components"]["schemas"]["EventIn"]["properties"]
    assert "closed_at" in fields and "redeemed_at" in fields


# --- tickets and coupons re-sent as they stand today ---------------------------------------------

TICKET = {"customer_id": "C1", "kind": "ticket", "occurred_at": "2026-03-01T09:00:00Z", "text": "refund late",
          "source_id": "t-1"}
COUPON = {"customer_id": "C1", "kind": "coupon", "occurred_at": "2026-03-01", "amount": "5",
          "attributes": {"code": "SAVE5"}, "source_id": "c-1"}


def test_a_re_sent_ticket_and_coupon_move_forward_and_the_answer_counts_them(client):
    assert post(client, [TICKET, COUPON, ORDER]).status_code == 201
    response = post(client, [{**TICKET, "closed_at": "2026-03-03T17:00:00Z"},
                             {**COUPON, "attributes": {"code": "SAVE5", "redeemed": True}}, ORDER])
    assert response.status_code == 201, response.json()
    assert response.json() == {"rows": 3, "added": 0, "updated": 2, "skipped": 1, "customers_created": 0,
                               "tickets_closed": 1, "coupons_redeemed": 1}
    assert Event.objects.get(source_id="t-1").attributes == {"status": "closed", "closed_at": "2026-03-03T17:00:00+00:00"}
    assert Event.objects.get(source_id="c-1").attributes == {"code": "SAVE5", "redeemed": True}
    assert Event.objects.count() == 3
    # The same batch again (a retry after a timeout): nothing moves twice.
    again = post(client, [{**TICKET, "closed_at": "2026-03-03T17:00:00Z"},
                          {**COUPON, "attributes": {"code": "SAVE5", "redeemed": True}}, ORDER])
    assert (again.json()["updated"], again.json()["skipped"]) == (0, 3)


def test_a_re_sent_ticket_cannot_reopen_and_nothing_in_the_batch_is_stored(client):
    post(client, [{**TICKET, "closed_at": "2026-03-03T17:00:00Z"}])
    response = post(client, [{**ORDER, "customer_id": "C2"}, {**TICKET, "attributes": {"status": "open"}}])
    assert response.status_code == 400
    assert response.json()["errors"] == [{
        "row": 2, "field": "source_id",
        "message": "'t-1' is stored as a closed ticket, and a re-send cannot reopen it: a ticket's state only moves "
                   "forward (open to closed); send a reopened ticket as a new event with a new source_id"}]
    assert Event.objects.get(source_id="t-1").attributes["status"] == "closed"
    assert not Customer.objects.filter(external_id="C2").exists()


def test_schema_documents_state_updates(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    out = schema["components"]["schemas"]["EventBatchOut"]["properties"]
    assert {"updated", "tickets_closed", "coupons_redeemed"} <= set(out)
    post_op = schema["paths"]["/api/events/"]["post"]
    assert "an open ticket now closed" in post_op["description"]
