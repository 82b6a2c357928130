"""The Impact page ("are the alerts working?"): who may open it, the lift and the revenue it implies,
the funnel per owner with its total, week by week, the plain "not enough outcomes yet", and a query
count that does not grow with customers or owners."""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from crm_plugin.loop.services import closed_loop_refresh
from crm_plugin.models import Alert, Customer, Intervention
from mlcore.uplift import retention_lift
from tests.crm_plugin.factories import AccountOwnerFactory, CustomerFactory, InterventionFactory, UserFactory
from tests.crm_plugin.views.builders import alerted_group
from tests.crm_plugin.views.test_closed_loop_views import section, text_of

pytestmark = pytest.mark.django_db
IMPACT = reverse("crm-impact")
INTERVENTIONS = reverse("crm-interventions")


@pytest.fixture(autouse=True)
def _loop_settings(settings):
    settings.CHURN_OUTCOME_DAYS = 30
    settings.CHURN_ESCALATION_DAYS = 3
    settings.UPLIFT_MIN_N = 30
    settings.UPLIFT_MIN_EVENTS = 5
    settings.CONTROL_GROUP_SHARE = 0.10
    settings.SHOP_CURRENCY = "EUR"


@pytest.fixture
def cleo(db):
    """An owner with a book and no alert yet."""
    owner = AccountOwnerFactory(user=UserFactory(username="cleo"), name="Cleo")
    CustomerFactory(owner=owner, value=Decimal("300"))
    return owner


@pytest.fixture
def shop(ana, ben, cleo, version):
    """Ana: 50 held out (20 churn) and 50 with a coupon, outcome recorded (10 churned, 40 retained).
    Ben: 40 alerted, nobody acted, 18 churn. Every customer is worth 500 a year."""
    alerted_group(owner=ana, segment="regular", n=50, churned=20, control=True, action=None, prefix="H", version=version)
    alerted_group(owner=ana, segment="regular", n=50, churned=10, control=False, action="coupon", recorded=True,
                  prefix="K", version=version)
    alerted_group(owner=ben, segment="regular", n=40, churned=18, control=False, action=None, prefix="U", version=version)


def _page(client, user) -> str:
    client.force_login(user)
    response = client.get(IMPACT)
    assert response.status_code == 200
    return response.content.decode()


# --- who may open it ---------------------------------------------------------------------


def test_managers_staff_and_admins_open_it_and_see_the_link_in_the_top_bar(client, maria, admin_user):
    staff = UserFactory(username="ops")
    staff.is_staff = True
    staff.save()
    for user in (maria.user, staff, admin_user):
        client.force_login(user)
        assert client.get(IMPACT).status_code == 200
        worklist = client.get(reverse("crm-worklist")).content.decode()
        assert f'<a href="{IMPACT}">Impact</a>' in worklist, user.username


def test_an_account_manager_gets_a_403_that_says_where_their_own_numbers_are(ana_client):
    response = ana_client.get(IMPACT)
    assert response.status_code == 403
    page = text_of(response.content.decode())
    assert "Not allowed" in page
    assert "This page compares every owner&#x27;s book, so it is for managers and staff." in page
    assert "Your own alerts, actions and outcomes are on the Models page." in page
    assert f'href="{IMPACT}"' not in ana_client.get(reverse("crm-worklist")).content.decode()  # no link to a refusal


def test_a_user_without_a_book_gets_a_403_and_a_visitor_the_sign_in(client):
    assert client.get(IMPACT).status_code == 302
    client.force_login(UserFactory(username="nobody"))
    response = client.get(IMPACT)
    assert response.status_code == 403
    assert b"Models page" not in response.content  # they have no alerts of their own either


# --- the figures, computed by hand -------------------------------------------------------


def test_lift_with_its_interval_from_the_stored_loop(client, maria, shop):
    lift = text_of(section(_page(client, maria.user), "lift"))
    # Alerted: 10 of Ana's 50 + 18 of Ben's 40 churned = 28 of 90 = 31.1%; held out: 20 of 50 = 40.0%.
    # Lift 40.0 - 31.1 = +8.9 pts; Newcombe's 95% interval -7.1 to +25.2 (as in the model's tests).
    assert "31.1% of alerted churned (n=90) vs 40.0% held out (n=50): lift +8.9 pts (95% CI -7.1 to +25.2)" in lift
    assert "The interval includes zero: we cannot tell yet whether the alerts help" in lift
    assert "Not enough outcomes yet" not in lift


def test_revenue_recorded_as_retained_and_what_the_lift_implies(client, maria, ana, shop):
    # Two more customers with recorded outcomes and no alert: the latest recorded final outcome counts.
    now = timezone.now()
    turned = CustomerFactory(owner=ana, value=Decimal("1200"))  # retained, later churned after all: not counted
    InterventionFactory(customer=turned, outcome="retained", outcome_at=now - timedelta(days=20))
    InterventionFactory(customer=turned, outcome="churned", outcome_at=now - timedelta(days=5))
    kept = CustomerFactory(owner=ana, value=Decimal("800"))  # retained; a later "no response" is no final outcome
    InterventionFactory(customer=kept, outcome="retained", outcome_at=now - timedelta(days=10))
    InterventionFactory(customer=kept, outcome="no_response", outcome_at=now - timedelta(days=2))

    revenue = text_of(section(_page(client, maria.user), "revenue"))
    # 40 coupon customers retained x 500 + the 800 one = 20,800 over 41 customers.
    assert "Recorded as retained €20,800 a year Yearly value of the 41 customers whose latest recorded outcome" in revenue
    # Lift 0.4 - 28/90 = 8/90; x the 90 alerted customers' 45,000 a year = 4,000.
    assert "Kept because of the alerts (from the lift) €4,000 a year" in revenue
    assert "churned 8.9 pts less than held-out ones; applied to the €45,000 yearly value of the 90 alerted" in revenue
    oracle = retention_lift(28, 90, 20, 50)
    low, high = round(oracle.lift_low * 45_000), round(oracle.lift_high * 45_000)
    assert low < 0 < high
    assert f"95% interval: -€{-low:,} to €{high:,}." in revenue


def test_funnel_has_one_row_per_owner_a_total_and_links_to_their_actions(client, maria, ana, ben, cleo, shop):
    html = _page(client, maria.user)
    funnel = text_of(section(html, "funnel"))
    # Delivered alerts only: Ana's 50 held-out customers are nobody's to act on.
    assert "Ana 50 50 (100%) 50 0 50 40 10" in funnel
    assert "Ben 40 0 (0%) 0 0 0 0 0" in funnel
    assert "Cleo 0 0 (—) 0 0 0 0 0" in funnel  # a book with no alert yet is listed too
    assert "Maria" not in funnel  # a manager without a book of her own
    assert "All owners 90 50 (56%) 50 0 50 40 10" in funnel
    assert funnel.index("Ana") < funnel.index("Ben") < funnel.index("Cleo") < funnel.index("All owners")
    part = section(html, "funnel")
    assert f'href="{INTERVENTIONS}?owner={ana.pk}"' in part and f'href="{INTERVENTIONS}?owner={cleo.pk}"' in part
    # The link opens the interventions page filtered to Ana, with her 50 coupons.
    client.force_login(maria.user)
    listed = client.get(f"{INTERVENTIONS}?owner={ana.pk}")
    assert listed.context["page"].paginator.count == 50


def _at(day, hour: int = 12) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour)))


def test_week_by_week_counts_and_their_links_match_the_interventions_list(client, maria, ana):
    today = timezone.localdate()
    monday = today - timedelta(days=today.weekday())
    two_ago = monday - timedelta(weeks=2)
    customer = CustomerFactory(owner=ana)

    def alert(when, status="sent", kind="high_risk", control=False):
        Alert.objects.create(customer=customer, owner=ana, kind=kind, status=status, is_control=control,
                             idempotency_key=f"k{Alert.objects.count()}", created_at=when)

    # Two weeks ago: 3 delivered (2 DMs, 1 in the digest), 1 held out; a failed one and an escalation do not count.
    for status in ("sent", "sent", "digested"):
        alert(_at(two_ago + timedelta(days=1)), status=status)
    alert(_at(two_ago + timedelta(days=2)), status="held_out", control=True)
    alert(_at(two_ago + timedelta(days=2)), status="failed")
    alert(_at(two_ago + timedelta(days=3)), kind="escalation")
    alert(_at(monday - timedelta(weeks=13)))  # before the 12 weeks
    alert(_at(today), status="pending")  # not delivered yet
    InterventionFactory(customer=customer, created_at=_at(two_ago + timedelta(days=2)), outcome="retained",
                        outcome_at=_at(today))  # counted in the week of the action, not of the outcome
    InterventionFactory(customer=customer, created_at=_at(two_ago + timedelta(days=6), hour=23))
    InterventionFactory(customer=customer, created_at=_at(today, hour=0), outcome="churned", outcome_at=_at(today, hour=0))

    response = (client.force_login(maria.user), client.get(IMPACT))[1]
    weeks = response.context["impact"].weeks
    assert len(weeks) == 12
    assert weeks[0].start == monday - timedelta(weeks=11) and weeks[-1].start == monday and weeks[-1].current
    assert [(w.alerts_sent, w.held_out, w.actions, w.retained, w.churned) for w in weeks] == (
        [(0, 0, 0, 0, 0)] * 9 + [(3, 1, 2, 1, 0), (0, 0, 0, 0, 0), (0, 0, 1, 0, 1)])
    year, number, _ = two_ago.isocalendar()
    table = text_of(section(response.content.decode(), "weekly"))
    assert f"{two_ago.day} {two_ago:%b} {year}-W{number:02d} 3 1 2 1 0" in table
    assert re.search(r"so far 0 0 1 0 1 ", table), table

    # A count's link opens the interventions page on that week, with exactly that many actions.
    html = response.content.decode()
    week_range = f"date_from={two_ago:%Y-%m-%d}&amp;date_to={two_ago + timedelta(days=6):%Y-%m-%d}"
    assert f'href="{INTERVENTIONS}?{week_range}"' in html
    assert f'href="{INTERVENTIONS}?outcome=retained&amp;{week_range}"' in html
    listed = client.get(f"{INTERVENTIONS}?{week_range.replace('&amp;', '&')}")
    assert listed.context["page"].paginator.count == 2
    listed = client.get(f"{INTERVENTIONS}?outcome=retained&{week_range.replace('&amp;', '&')}")
    assert listed.context["page"].paginator.count == 1
    # The small chart says the same in its accessible summary.
    assert "Week by week, 12 weeks from" in html and "alerts sent 3, actions logged 3, retained 1, churned 1" in html


def test_weeks_follow_the_shops_time_zone(client, maria, ana, settings):
    settings.TIME_ZONE = "Pacific/Auckland"  # UTC+12/13: a Sunday evening in UTC is Monday there
    today = timezone.localdate()
    monday = today - timedelta(days=today.weekday())
    customer = CustomerFactory(owner=ana)
    InterventionFactory(customer=customer, created_at=_at(monday - timedelta(weeks=1), hour=1))  # Monday 01:00 local
    client.force_login(maria.user)
    weeks = client.get(IMPACT).context["impact"].weeks
    assert [w.actions for w in weeks[-3:]] == [0, 1, 0]


# --- too little data ----------------------------------------------------------------------


def test_too_few_outcomes_says_how_many_are_needed_instead_of_an_interval(client, maria, ana, ben):
    alerted_group(owner=ana, segment="regular", n=12, churned=5, control=True, action=None, prefix="H")
    alerted_group(owner=ben, segment="regular", n=40, churned=10, control=False, action=None, prefix="U")
    html = _page(client, maria.user)
    lift = text_of(section(html, "lift"))
    assert "Not enough outcomes yet — held out: 12 of 30 needed." in lift
    assert "95% CI" not in lift  # no interval that looks precise and is not
    assert "With 10% held out, 30 held-out outcomes take about 300 alerts." in lift
    revenue = text_of(section(html, "revenue"))
    assert "Kept because of the alerts (from the lift) Not measured yet Not enough outcomes yet — held out: 12 of 30" in revenue
    assert "No owner has recorded a customer as retained yet." in revenue


def test_nothing_yet_and_no_hold_out_each_say_so(client, maria, settings):
    lift = text_of(section(_page(client, maria.user), "lift"))
    assert "No outcomes yet: an alert&#x27;s outcome is known 30 days after it" in lift
    settings.CONTROL_GROUP_SHARE = 0.0
    lift = text_of(section(_page(client, maria.user), "lift"))
    assert "Nobody is held out (CONTROL_GROUP_SHARE is 0)" in lift


def test_a_loop_stored_before_revenue_was_kept_shows_no_implied_figure(client, maria, shop):
    from crm_plugin.models import LoopSnapshot

    snapshot = closed_loop_refresh()
    report = dict(snapshot.report)
    del report["alerted_value"], report["as_of"]
    LoopSnapshot.objects.filter(pk=snapshot.pk).update(report=report)
    revenue = text_of(section(_page(client, maria.user), "revenue"))
    assert "Not measured yet" in revenue and "€" in revenue  # recorded revenue is still there


# --- cost -----------------------------------------------------------------------------------


def test_query_count_is_bounded_and_does_not_grow_with_customers_or_owners(client, maria, ana, ben, version,
                                                                           django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(maria.user)

    def grow(tag: str, owners: int):
        for index in range(owners):
            owner = AccountOwnerFactory(name=f"{tag}{index}")
            alerted_group(owner=owner, segment="regular", n=6, churned=2, control=index % 2 == 0, action="call",
                          recorded=True, prefix=f"{tag}{index}-", version=version)
            Customer.objects.bulk_create([Customer(external_id=f"{tag}{index}q{i}", owner=owner) for i in range(10)])
        Intervention.objects.filter(outcome="").update(outcome="retained", outcome_at=timezone.now())
        closed_loop_refresh()  # as the daily job stores it before anyone reads the page

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(IMPACT).status_code == 200
        return len(captured)

    grow("a", 2)
    small = queries()
    grow("b", 12)
    with django_assert_max_num_queries(15):  # session, user, owner, fingerprint, stored loop, 4 figures
        big = queries()
    assert big == small


# --- the weekly chart -------------------------------------------------------------------------


def test_weekly_chart_draws_a_line_per_series_and_labels_the_latest_week():
    from crm_plugin.web.charts import Series, weekly_counts_chart

    weeks = ["1 Sep", "8 Sep", "15 Sep", "22 Sep", "29 Sep"]
    svg = weekly_counts_chart(weeks, [Series("Alerts sent", [], [3, 0, 5, 2, 1]), Series("Retained", [], [0, 0, 1, 0, 2])],
                              label_every=2)
    assert svg.count("<polyline") == 2
    assert 'aria-label="Week by week, 5 weeks from 1 Sep to 29 Sep: alerts sent 11, retained 3"' in svg
    assert "<title>15 Sep: 5 alerts sent</title>" in svg
    labels = re.findall(r'class="tick"[^>]*text-anchor="(?:start|middle|end)">([^<]+)</text>', svg)
    assert [label for label in labels if label in weeks] == ["1 Sep", "15 Sep", "29 Sep"]  # every 2nd, from the latest
    quiet = weekly_counts_chart(weeks, [Series("Alerts sent", [], [0] * 5)])
    assert "No data" in quiet and "<polyline" not in quiet
