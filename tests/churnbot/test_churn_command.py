"""/churn through the signed endpoint: customer card, top lists, help, refusals."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from crm_plugin.models import Customer, Event, Intervention
from crm_plugin.scoring.services import customer_latest_score_refresh
from tests.churnbot.block_kit import block_kit_problems
from tests.crm_plugin.factories import (
    AccountOwnerFactory,
    ChurnScoreFactory,
    CustomerFactory,
    EventFactory,
    InterventionFactory,
    ModelVersionFactory,
)

pytestmark = pytest.mark.django_db


def _scored(customer: Customer, history: list[tuple[int, float]], version) -> None:
    """Scores at `days ago` with probabilities; the newest becomes latest_score, and the customer is
    staged and ranked as scoring would leave a customer still ordering (at risk from a medium score)."""
    now = timezone.now()
    latest = None
    for days, probability in sorted(history, reverse=True):
        band = "high" if probability >= 0.6 else "medium" if probability >= 0.3 else "low"
        latest = ChurnScoreFactory(customer=customer, model_version=version, as_of=now - timedelta(days=days),
                                   probability=probability, band=band)
    Customer.objects.filter(pk=customer.pk).update(
        latest_score=latest, lifecycle_stage="at_risk" if latest.band != "low" else "active")
    customer_latest_score_refresh(customer_ids=[customer.pk])


def _all_text(body: dict) -> str:
    parts = [body.get("text", "")]
    for block in body.get("blocks", []):
        if "text" in block and isinstance(block["text"], dict):
            parts.append(block["text"]["text"])
        for element in block.get("elements", []):
            if isinstance(element, dict) and isinstance(element.get("text"), (dict, str)):
                parts.append(element["text"]["text"] if isinstance(element["text"], dict) else element["text"])
    return "\n".join(parts)


@pytest.fixture
def book():
    version = ModelVersionFactory()
    ana = AccountOwnerFactory(name="Ana", slack_user_id="UANA", user__username="ana")
    bob = AccountOwnerFactory(name="Bob", slack_user_id="UBOB", user__username="bob")
    boss = AccountOwnerFactory(name="Boss", slack_user_id="UBOSS", is_manager=True, user__username="boss")
    risky = CustomerFactory(owner=ana, name="Risky Rita", external_id="C000123", email="rita@mail.example")
    _scored(risky, [(30, 0.30), (7, 0.50), (0, 0.82)], version)
    EventFactory(customer=risky, kind=Event.Kind.ORDER, occurred_at=timezone.now() - timedelta(days=64),
                 amount=Decimal("59.90"))
    InterventionFactory(customer=risky, action=Intervention.Action.CALL, note="left a voicemail")
    calm = CustomerFactory(owner=ana, name="Calm Carl", external_id="C000124")
    _scored(calm, [(0, 0.10)], version)
    bobs = CustomerFactory(owner=bob, name="Bobs Betty", external_id="C000200")
    _scored(bobs, [(0, 0.95)], version)
    return {"ana": ana, "bob": bob, "boss": boss, "risky": risky, "calm": calm, "bobs": bobs}


def test_customer_card_shows_risk_trend_reasons_last_order_and_actions(slack, book):
    Customer.objects.filter(pk=book["risky"].pk).update(value=Decimal("4844.40"), segment="vip", lifecycle_stage="at_risk")
    response = slack.command("customer C000123", user_id="UANA")
    assert response.status_code == 200
    body = response.json()
    assert body["response_type"] == "ephemeral"
    text = _all_text(body)
    assert "Risky Rita" in text and "owner: Ana" in text
    assert "82%" in text and "high" in text
    assert "7 days ▲ +32 pts" in text and "30 days ▲ +52 pts" in text
    assert "No order for 64 days; usually orders every 20 days" in text  # reasons in a manager's words
    ordered = timezone.localdate() - timedelta(days=64)
    [facts] = [b["fields"] for b in body["blocks"] if "fields" in b]
    assert [f["text"] for f in facts] == [
        "*Yearly value*\n€4,844", f"*Last order*\n{ordered.day} {ordered:%b %Y} · €59.90\n64 days ago",
        "*Segment*\nvip", "*Stage*\nAt risk",
    ]
    assert "Call on" in text and "left a voicemail" in text
    actions = next(b for b in body["blocks"] if b["type"] == "actions")
    ids = [e["action_id"] for e in actions["elements"]]
    assert ids == ["log_action", "snooze_select", "open_crm"]
    assert actions["elements"][-1]["url"] == f"https://crm.shop.example/customers/{book['risky'].pk}/"


def test_customer_found_by_email_too(slack, book):
    assert "Risky Rita" in _all_text(slack.command("customer rita@mail.example", user_id="UANA").json())


def test_unknown_customer_gets_a_clear_message_with_a_hint(slack, book):
    text = _all_text(slack.command("customer C999999", user_id="UANA").json())
    assert "No customer you can see matches 'C999999'" in text
    assert "/churn top" in text


def test_another_owners_customer_is_refused_without_leaking_it(slack, book):
    text = _all_text(slack.command("customer C000200", user_id="UANA").json())
    assert "another owner's book" in text
    assert "Betty" not in text and "95%" not in text


def test_manager_sees_any_customer(slack, book):
    assert "Bobs Betty" in _all_text(slack.command("customer C000200", user_id="UBOSS").json())


def test_top_lists_the_callers_own_riskiest_first(slack, book):
    # The CRM's at-risk tab: active customers with a medium or high score, by value at risk.
    text = _all_text(slack.command("top", user_id="UANA").json())
    assert "Risky Rita" in text
    assert "Calm Carl" not in text  # low risk: not on the at-risk list
    assert "Bobs Betty" not in text


def test_top_leaves_out_lapsed_customers_and_ranks_by_value_at_risk(slack, book):
    from crm_plugin.models import Customer

    gone = CustomerFactory(owner=book["ana"], name="Gone Gina", value=Decimal("9000"))
    _scored(gone, [(0, 0.99)], ModelVersionFactory())
    big = CustomerFactory(owner=book["ana"], name="Big Bea", value=Decimal("5000"))
    _scored(big, [(0, 0.40)], ModelVersionFactory())
    Customer.objects.filter(pk=gone.pk).update(lifecycle_stage="lapsed")
    Customer.objects.filter(pk=big.pk).update(lifecycle_stage="at_risk")
    text = _all_text(slack.command("top", user_id="UANA").json())
    assert "Gone Gina" not in text
    assert text.index("Big Bea") < text.index("Risky Rita")


def test_top_n_limits_the_list(slack, book):
    from crm_plugin.models import Customer

    Customer.objects.filter(pk=book["calm"].pk).update(lifecycle_stage="at_risk")
    text = _all_text(slack.command("top 1", user_id="UANA").json())
    assert "Risky Rita" in text and "Calm Carl" not in text


def test_top_all_is_for_managers(slack, book):
    refused = _all_text(slack.command("top all", user_id="UANA").json())
    assert "Only managers" in refused and "Bobs Betty" not in refused
    text = _all_text(slack.command("top all", user_id="UBOSS").json())
    assert text.index("Bobs Betty") < text.index("Risky Rita")


def test_manager_top_for_someone_by_mention_or_name(slack, book):
    by_mention = _all_text(slack.command("top <@UBOB|bob> 5", user_id="UBOSS").json())
    assert "Bobs Betty" in by_mention and "Risky Rita" not in by_mention
    by_name = _all_text(slack.command("top @ana", user_id="UBOSS").json())
    assert "Risky Rita" in by_name and "Bobs Betty" not in by_name
    assert "No account owner matches @nobody" in _all_text(slack.command("top @nobody", user_id="UBOSS").json())


@pytest.mark.parametrize("text,problem", [
    ("", None),
    ("help", None),
    ("frobnicate", "Unknown subcommand `frobnicate`"),
    ("customer", "needs a name, email or id"),
    ("customer <mailto:>", "needs a name, email or id"),
    ("top lots", "takes a number from 1 to 20"),
    ("top ²", "takes a number from 1 to 20"),
    ("top 0", "takes a number from 1 to 20"),
    ("top 500", "takes a number from 1 to 20"),
])
def test_empty_unknown_or_malformed_commands_get_usage_help(slack, book, text, problem):
    response = slack.command(text, user_id="UANA")
    assert response.status_code == 200
    body_text = _all_text(response.json())
    assert "/churn top [N]" in body_text
    if problem:
        assert problem in body_text


# --- finding a customer by name -------------------------------------------------------------------

def _choices(body: dict) -> list[dict]:
    """The matches a search listed: one section with a Show button each."""
    return [b for b in body["blocks"] if b["type"] == "section" and (b.get("accessory") or {}).get("type") == "button"]


def test_customer_found_by_part_of_the_name_in_any_case(slack, book):
    body = slack.command("customer rITa", user_id="UANA").json()
    assert body["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "Risky Rita", "emoji": True}}
    assert "82%" in _all_text(body)


def test_a_name_search_only_finds_customers_the_caller_may_see(slack, book):
    refused = _all_text(slack.command("customer betty", user_id="UANA").json())
    assert "No customer you can see matches 'betty'" in refused
    assert "Bobs" not in refused and "95%" not in refused and "another owner" not in refused
    assert "Bobs Betty" in _all_text(slack.command("customer betty", user_id="UBOSS").json())


def test_a_name_with_spaces_and_an_ampersand_is_found_as_typed(slack, book):
    CustomerFactory(owner=book["ana"], name="Smith & Sons Ltd", external_id="C000500")
    # Slack sends & < > in command text as entities.
    body = slack.command("customer smith  &amp; sons", user_id="UANA").json()
    assert "Smith &amp; Sons Ltd" in _all_text(body) and "C000500" in _all_text(body)
    assert not _choices(body)


@pytest.mark.parametrize("typed", [
    "<mailto:rita@mail.example|rita@mail.example>", "<mailto:rita@mail.example>", "RITA@mail.example",
])
def test_an_email_is_found_also_as_slack_sends_it_in_a_link(slack, book, typed):
    body = slack.command(f"customer {typed}", user_id="UANA").json()
    assert "Risky Rita" in _all_text(body) and not _choices(body)


def test_a_database_id_still_finds_the_customer(slack, book):
    assert "Risky Rita" in _all_text(slack.command(f"customer {book['risky'].pk}", user_id="UANA").json())


@pytest.mark.parametrize("typed", ["<@UBOB|bob>", "<#C0123|general>", "<!here>", "rita <@UBOB>"])
def test_a_mention_is_not_taken_for_a_customer(slack, book, typed):
    response = slack.command(f"customer {typed}", user_id="UANA")
    assert response.status_code == 200
    text = _all_text(response.json())
    assert "looks up customers by name, email or id, not Slack people or channels" in text
    assert "Risky Rita" not in text


@pytest.mark.parametrize("typed", ["99999999999999999999999", "²", "a" * 250, "%", "_", "\x00rita"])
def test_odd_searches_get_an_answer_not_an_error(slack, book, typed):
    response = slack.command(f"customer {typed}", user_id="UANA")
    assert response.status_code == 200
    text = _all_text(response.json())
    if typed == "\x00rita":
        assert "Risky Rita" in text
    elif len(typed) > 200:
        assert "search with at most 200" in text
    else:  # no customer has these in the name; % and _ are not wildcards
        assert f"No customer you can see matches {typed!r}" in text


def test_several_matches_are_listed_best_first_with_a_show_button_and_a_count_of_the_rest(slack, book):
    for i in range(11):
        CustomerFactory(owner=book["ana"], name=f"Anna Meyer {i:02d}", external_id=f"M{i:03d}")
    CustomerFactory(owner=book["ana"], name="Meyer", external_id="M100")
    CustomerFactory(owner=book["bob"], name="Meyer Bob's", external_id="M200")  # not Ana's
    body = slack.command("customer meyer", user_id="UANA").json()
    assert body["response_type"] == "ephemeral"
    assert body["text"] == "12 customers match meyer: pick one."
    assert body["blocks"][0]["text"]["text"] == "12 customers match “meyer”"
    listed = _choices(body)
    assert len(listed) == 10
    assert "|Meyer>* (M100)" in listed[0]["text"]["text"]  # the whole name first
    assert "Anna Meyer 00" in listed[1]["text"]["text"] and "Anna Meyer 08" in listed[9]["text"]["text"]
    assert {b["accessory"]["action_id"] for b in listed} == {"show_customer"}
    assert "2 more — refine the search" in body["blocks"][-1]["elements"][0]["text"]
    assert "Bob" not in _all_text(body)
    assert block_kit_problems(body["blocks"]) == []


def test_an_email_two_customers_share_lists_both(slack, book):
    CustomerFactory(owner=book["ana"], name="Rita's Shop", external_id="C000777", email="rita@mail.example")
    body = slack.command("customer rita@mail.example", user_id="UANA").json()
    assert body["text"] == "2 customers match rita@mail.example: pick one."
    assert "more — refine" not in _all_text(body)


def test_show_replaces_the_list_with_the_customer_card(slack, slack_standin, book, django_capture_on_commit_callbacks):
    CustomerFactory(owner=book["ana"], name="Rita Two", external_id="C000778")
    listed = _choices(slack.command("customer rita", user_id="UANA").json())
    assert ["Rita Two" in b["text"]["text"] for b in listed] == [True, False]  # a name starting so comes first
    with django_capture_on_commit_callbacks(execute=True):
        response = slack.click(user_id="UANA", action_id="show_customer", value=listed[1]["accessory"]["value"],
                               ephemeral=True)
    assert response.status_code == 200
    [answer] = slack_standin.calls_to("/response/xyz")
    assert answer.arg("replace_original") is True and answer.arg("response_type") == "ephemeral"
    assert answer.arg("blocks")[0]["text"]["text"] == "Risky Rita"
    assert "churn risk 82%" in answer.arg("text")


def test_show_on_another_owners_customer_is_refused(slack, slack_standin, book, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        slack.click(user_id="UBOB", action_id="show_customer", value=f"{book['risky'].pk}::", ephemeral=True)
    [answer] = slack_standin.calls_to("/response/xyz")
    assert answer.arg("text") == "That customer is not in your book (or no longer exists)."
    assert not answer.arg("blocks") and "Rita" not in str(answer.json)


def test_top_one_and_its_count_are_singular(slack, book):
    body = slack.command("top 1", user_id="UANA").json()
    assert body["text"] == "Your riskiest customer: 1 customer"
    assert body["blocks"][0]["text"]["text"] == "Your riskiest customer"
