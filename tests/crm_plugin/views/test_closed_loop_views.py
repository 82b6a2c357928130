"""The closed loop on the CRM pages: measured lift and the funnel on the Impact page, the profit threshold
in the model report, the next-best action on the customer page; who sees what; query counts that do not
grow with rows. (The Impact page's own figures: test_impact.py.)"""
from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from churnbot.queries import customer_card_data
from crm_plugin.loop.report import next_best_action_for, recommendation_payload
from tests.crm_plugin.factories import UserFactory
from tests.crm_plugin.views.builders import alerted_group, scored_customer

pytestmark = pytest.mark.django_db
REPORT = reverse("crm-models")
IMPACT = reverse("crm-impact")


@pytest.fixture(autouse=True)
def _loop_settings(settings):
    settings.CHURN_OUTCOME_DAYS = 30
    settings.CHURN_ESCALATION_DAYS = 3
    settings.UPLIFT_MIN_N = 30
    settings.UPLIFT_MIN_EVENTS = 5
    settings.CONTROL_GROUP_SHARE = 0.10
    settings.CHURN_BAND_HIGH = 0.6
    settings.PROFIT_ACTION_COST = 10.0
    settings.PROFIT_SUCCESS_RATE = 0.2
    settings.PROFIT_VALUE_SHARE = 0.3


@pytest.fixture
def loop(ana, ben, version):
    """Regular: 20 of 50 held out churn (40%), 10 of 50 with a coupon (20%), 18 of 40 alerted and
    untouched (Ben's). VIP: 2 of 5 held out and 1 of 5 alerted churn - too few to measure."""
    alerted_group(owner=ana, segment="regular", n=50, churned=20, control=True, action=None, prefix="H", version=version)
    alerted_group(owner=ana, segment="regular", n=50, churned=10, control=False, action="coupon", recorded=True,
                  prefix="K", version=version)
    alerted_group(owner=ben, segment="regular", n=40, churned=18, control=False, action=None, prefix="U", version=version)
    alerted_group(owner=ana, segment="vip", n=5, churned=2, control=True, action=None, prefix="VH", version=version)
    alerted_group(owner=ana, segment="vip", n=5, churned=1, control=False, action=None, prefix="VA", version=version)


def text_of(html: str) -> str:
    """The page's visible text with tags dropped and whitespace squeezed, for sentence asserts."""
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    return re.sub(r"\s+([).,])", r"\1", re.sub(r"\(\s+", "(", text))


def section(html: str, anchor: str) -> str:
    start = html.index(f'id="{anchor}"')
    return html[start:html.index("</section>", start)]


# --- Impact page: lift ---------------------------------------------------------------------


def test_manager_sees_the_measured_lift_overall_per_action_and_per_segment(client, maria, loop):
    client.force_login(maria.user)
    html = client.get(IMPACT).content.decode()
    lift = text_of(section(html, "lift"))
    # Overall: 29 of 95 alerted churned vs 22 of 55 held out.
    assert "30.5% of alerted churned (n=95) vs 40.0% held out (n=55): lift +9.5 pts" in lift
    # Coupon vs held out within the same segment mix: 20% vs 40%, Newcombe interval +2.0 to +36.4.
    assert re.search(r"coupon 20\.0% of 50 40\.0% of 50 \+20\.0 pts \+2\.0 to \+36\.4 pts", lift), lift
    assert re.search(r"regular 31\.1% of 90 40\.0% of 50 \+8\.9 pts -7\.1 to \+25\.2 pts", lift), lift
    # VIP: plainly not enough data, and no lift number that looks precise.
    assert re.search(r"vip Not enough data yet: only 5 treated customers \(need 30\); only 5 held-out customers "
                     r"\(need 30\); only 3 churned customers in both groups together \(need 5\)\. "
                     r"20\.0% of 5 40\.0% of 5 not enough data —", lift), lift
    assert "+20.0 pts" not in lift.split("vip", 1)[1]


def test_impact_page_and_api_show_the_same_lift(client, maria, loop):
    """One service behind both: every sentence of the API's lift_text appears on the page."""
    client.force_login(maria.user)
    html = client.get(IMPACT).content.decode()
    api = client.get("/api/lift/").json()
    assert text_of(api["lift_text"]["overall"]) in text_of(html)
    page = client.get(IMPACT).context["loop"]
    for row in page.by_action:
        assert row.summary == api["lift_text"]["by_action"][row.label]
    for row in page.by_segment:
        assert row.summary == api["lift_text"]["by_segment"][row.label]


def test_without_outcomes_the_impact_page_says_there_is_not_enough_data(client, maria):
    client.force_login(maria.user)
    html = client.get(IMPACT).content.decode()
    lift = text_of(section(html, "lift"))
    assert "No outcomes yet: an alert&#x27;s outcome is known 30 days after it" in lift
    assert "table" not in section(html, "lift")  # no rows of dashes: nothing is measured yet
    assert "No action has a known outcome yet" in text_of(section(html, "evidence"))


def test_next_best_action_evidence_is_listed(client, maria, loop):
    client.force_login(maria.user)
    evidence = text_of(section(client.get(IMPACT).content.decode(), "evidence"))
    assert "coupon 50 55 80.0% 60.0% per customer (uplift model)" in evidence


def test_model_report_keeps_model_quality_and_points_managers_to_the_impact_page(client, maria, loop):
    client.force_login(maria.user)
    html = client.get(REPORT).content.decode()
    assert 'id="lift"' not in html and 'id="funnel"' not in html  # moved, not copied
    assert 'id="threshold"' in html
    assert f'on the <a href="{IMPACT}">Impact</a> page' in html


# --- model report: threshold --------------------------------------------------------------


def test_profit_threshold_next_to_the_one_in_use_with_its_assumptions(client, maria, ana, version):
    # Gain if alerted = p × 1000 × 0.3 × 0.2 − 10: +44 (p 0.9), +20 (p 0.5), −4 (p 0.1).
    for p in (0.9, 0.5, 0.1):
        scored_customer(owner=ana, probabilities=[p], value="1000.00", version=version)
    client.force_login(maria.user)
    response = client.get(REPORT)
    threshold = text_of(section(response.content.decode(), "threshold"))
    assert "Most profitable threshold 0.50 2 customers alerted · expected profit 64" in threshold
    assert "Threshold in use (high-risk band) 0.60 1 customer alerted · expected profit 44" in threshold
    assert "Moving the line from 0.60 to 0.50 adds an expected 20 (+1 customers alerted)." in threshold
    for text in ["yearly value × 30% (PROFIT_VALUE_SHARE)", "Cost of one action: 10.00 (PROFIT_ACTION_COST)",
                 "20% (PROFIT_SUCCESS_RATE)", "latest score of 3 customers"]:
        assert text in threshold, text
    assert response.content.decode().count(
        'aria-label="Expected profit by alert threshold: most profitable at 50%, in use 60%"') == 2  # wide and phone


def test_threshold_in_use_that_is_already_best_says_so(client, maria, ana, version, settings):
    settings.CHURN_BAND_HIGH = 0.5
    for p in (0.9, 0.5, 0.1):
        scored_customer(owner=ana, probabilities=[p], value="1000.00", version=version)
    client.force_login(maria.user)
    assert "The line in use is the most profitable one." in client.get(REPORT).content.decode()


def test_threshold_without_scores_says_what_to_run(client, maria):
    client.force_login(maria.user)
    assert "No customer has been scored yet — run <code>python manage.py run_daily</code>" in client.get(REPORT).content.decode()


def test_measured_relative_lift_is_shown_next_to_the_assumed_success_rate(client, maria, loop, ana, version):
    scored_customer(owner=ana, probabilities=[0.9], value="1000.00", version=version)
    client.force_login(maria.user)
    threshold = text_of(section(client.get(REPORT).content.decode(), "threshold"))
    # Overall relative lift: (40.0% − 30.5%) / 40.0% = 24%.
    assert "Measured so far: alerted customers churned 24% less than held-out ones (the relative lift)." in threshold


# --- funnel and who sees what --------------------------------------------------------------


def test_manager_sees_the_funnel_of_every_owner(client, maria, loop):
    client.force_login(maria.user)
    funnel = text_of(section(client.get(IMPACT).content.decode(), "funnel"))
    assert "Ana 55 50 (91%) 50 0 50 40 10" in funnel
    assert "Ben 40 0 (0%) 0 0 0 0 0" in funnel


def test_owner_sees_only_their_own_funnel_and_no_lift(ana_client, loop):
    html = ana_client.get(REPORT).content.decode()
    assert 'id="lift"' not in html and 'id="threshold"' not in html
    funnel = text_of(section(html, "funnel"))
    assert "Your alerts → actions → outcomes" in funnel
    assert "Ana 55 50 (91%)" in funnel
    assert "Ben" not in funnel
    assert "shown to managers" in funnel


def test_staff_and_admin_see_the_loop_but_a_user_without_a_book_does_not(client, admin_user, loop):
    client.force_login(admin_user)
    assert 'id="lift"' in client.get(IMPACT).content.decode()
    assert 'id="threshold"' in client.get(REPORT).content.decode()
    staff = UserFactory(username="ops")
    staff.is_staff = True
    staff.save()
    client.force_login(staff)
    assert 'id="lift"' in client.get(IMPACT).content.decode()
    client.force_login(UserFactory(username="nobody"))
    assert client.get(IMPACT).status_code == 403
    html = client.get(REPORT).content.decode()
    assert 'id="threshold"' not in html and 'id="funnel"' not in html


def _report_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(REPORT).status_code == 200
    return len(queries)


def test_report_query_count_does_not_grow_with_alerts(client, maria, ana, ben, version):
    client.force_login(maria.user)

    def add(n: int, tag: str):
        alerted_group(owner=ana, segment="regular", n=n, churned=n // 3, control=True, action=None, prefix=f"{tag}H", version=version)
        alerted_group(owner=ben, segment=f"s{tag}", n=n, churned=n // 3, control=False, action="call", recorded=True,
                      prefix=f"{tag}C", version=version)
        for i in range(n):
            scored_customer(owner=ana, probabilities=[0.1 + 0.8 * i / n], version=version)

    add(5, "a")
    small = _report_queries(client)
    add(50, "b")
    assert _report_queries(client) == small


# --- customer page: next-best action -------------------------------------------------------


def customer_url(customer) -> str:
    return reverse("crm-customer", args=[customer.pk])


def test_customer_page_shows_the_next_best_action_with_the_slack_cards_evidence(ana_client, ana, loop, version):
    customer = scored_customer(owner=ana, name="Nia New", probabilities=[0.82], value="500.00", segment="regular",
                               version=version)
    html = ana_client.get(customer_url(customer)).content.decode()
    card = text_of(section(html, "next-action"))
    expected = next_best_action_for(customer=customer)
    assert expected.action == "coupon"
    assert expected.evidence_text.startswith("coupon: 80% kept vs 60% held out, n=50 (segment regular)")
    assert "Suggested next step Coupon" in card
    assert expected.evidence_text in card
    # The Slack /churn card carries the very same sentence.
    assert customer_card_data(customer=customer).next_best_action == recommendation_payload(expected)


def test_customer_page_without_evidence_says_why_there_is_no_suggestion(ana_client, ana, version):
    customer = scored_customer(owner=ana, probabilities=[0.9], segment="vip", version=version)
    card = text_of(section(ana_client.get(customer_url(customer)).content.decode(), "next-action"))
    why = next_best_action_for(customer=customer).evidence_text  # "No recommendation yet: no action has 30 treated..."
    assert why.startswith("No recommendation yet: no action has 30 treated")
    assert "No suggestion yet: " + why.removeprefix("No recommendation yet: ") in card


def test_customer_page_says_why_medium_and_unscored_customers_get_no_suggestion(ana_client, ana, loop, version):
    medium = scored_customer(owner=ana, probabilities=[0.42], segment="regular", version=version)
    card = text_of(section(ana_client.get(customer_url(medium)).content.decode(), "next-action"))
    assert ("No suggestion yet: suggestions are made for high-risk customers (churn probability of at least 60%); "
            "this one is at 42%.") in card
    unscored = alerted_group(owner=ana, segment="regular", n=1, churned=0, control=False, action=None, prefix="Z")[0]
    card = text_of(section(ana_client.get(customer_url(unscored)).content.decode(), "next-action"))
    assert "No suggestion yet: this customer has not been scored yet." in card


def test_another_owners_customer_still_forbidden_and_nothing_suggested(client, ben, ana, loop, version):
    customer = scored_customer(owner=ana, name="Nia New", probabilities=[0.82], segment="regular", version=version)
    client.force_login(ben.user)
    response = client.get(customer_url(customer))
    assert response.status_code == 403
    assert b"Suggested next step" not in response.content


def test_customer_page_query_count_does_not_grow_with_logged_outcomes(ana_client, ana, version):
    customer = scored_customer(owner=ana, probabilities=[0.82], segment="regular", value="500.00", version=version)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert ana_client.get(customer_url(customer)).status_code == 200
        return len(captured)

    alerted_group(owner=ana, segment="regular", n=5, churned=2, control=True, action=None, prefix="A", version=version)
    alerted_group(owner=ana, segment="regular", n=5, churned=1, control=False, action="call", recorded=True,
                  prefix="B", version=version)
    small = queries()
    alerted_group(owner=ana, segment="regular", n=60, churned=25, control=True, action=None, prefix="C", version=version)
    alerted_group(owner=ana, segment="regular", n=60, churned=10, control=False, action="call", recorded=True,
                  prefix="D", version=version)
    assert queries() == small
    assert "Suggested next step Call" in text_of(section(ana_client.get(customer_url(customer)).content.decode(), "next-action"))


def test_profit_inputs_take_decimal_money_from_the_latest_scores(ana, version):
    from crm_plugin.loop.selectors import profit_threshold_current

    scored_customer(owner=ana, probabilities=[0.2, 0.9], value="1000.00", version=version)  # latest: 0.9
    # Lapsed customers get no early warning from the policy, so the card does not count them either.
    scored_customer(owner=ana, probabilities=[0.95], value="9000.00", version=version, stage="lapsed")
    report = profit_threshold_current()
    assert report.n_customers == 1
    assert report.choice.expected_profit == pytest.approx(0.9 * 1000 * 0.3 * 0.2 - 10)


# --- caching: fresh after every alert, action, outcome or order ---------------------------


def test_cached_report_follows_new_outcomes_and_settings(client, maria, loop, settings):
    from crm_plugin.models import Intervention

    client.force_login(maria.user)
    before = text_of(section(client.get(IMPACT).content.decode(), "lift"))
    assert "coupon 20.0% of 50" in before
    # Two coupon customers who had been kept turn out to have churned after all.
    for intervention in Intervention.objects.filter(outcome="retained").order_by("pk")[:2]:
        intervention.outcome = "churned"
        intervention.save()
    after = text_of(section(client.get(IMPACT).content.decode(), "lift"))
    assert "coupon 24.0% of 50" in after
    settings.UPLIFT_MIN_N = 60  # a stricter evidence rule applies at once
    assert "coupon Not enough data yet: only 50 treated customers (need 60)" in text_of(
        section(client.get(IMPACT).content.decode(), "lift"))


def test_cached_suggestion_follows_newly_logged_actions(ana_client, ana, version):
    customer = scored_customer(owner=ana, probabilities=[0.82], segment="regular", value="500.00", version=version)
    alerted_group(owner=ana, segment="regular", n=50, churned=20, control=True, action=None, prefix="H", version=version)
    assert "No suggestion yet" in ana_client.get(customer_url(customer)).content.decode()
    alerted_group(owner=ana, segment="regular", n=50, churned=10, control=False, action="email", recorded=True,
                  prefix="E", version=version)
    assert "Suggested next step Email" in text_of(section(ana_client.get(customer_url(customer)).content.decode(),
                                                          "next-action"))


def test_a_second_view_reuses_the_cached_report(client, maria, loop):
    client.force_login(maria.user)
    first = _report_queries(client)
    assert _report_queries(client) < first  # episodes are not read again while nothing changed


def test_cached_threshold_follows_new_scores(client, maria, ana, version):
    client.force_login(maria.user)
    scored_customer(owner=ana, probabilities=[0.9], value="1000.00", version=version)
    assert "latest score of 1 customer." in text_of(section(client.get(REPORT).content.decode(), "threshold"))
    scored_customer(owner=ana, probabilities=[0.5], value="1000.00", version=version)
    threshold = text_of(section(client.get(REPORT).content.decode(), "threshold"))
    assert "latest score of 2 customers." in threshold and "Most profitable threshold 0.50" in threshold
