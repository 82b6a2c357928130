"""Every CRM page at 1280 and 390 px: screenshots to look at, no sideways scrolling, no console errors,
and on a phone the customer page's "Log action" within the first screen."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from tests.browser.conftest import ConsoleLog
from tests.browser.test_crm_flow import DESKTOP, PHONE, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _sideways(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


def _marked_customer(shop):
    """Clara, with orders, an alert and a logged call inside her score chart's dates."""
    from django.utils import timezone

    from crm_plugin.models import Alert, Event, Intervention

    clara = shop["customers"]["Clara Quinn"]
    now = timezone.now()
    for n, days in enumerate([27, 21, 14, 13, 5]):
        Event.objects.create(customer=clara, kind="order", occurred_at=now - timedelta(days=days, hours=3),
                             amount=Decimal("54.00") + n, quantity=1, source_id=f"gallery-o-{n}")
    Alert.objects.create(customer=clara, owner=shop["ana"], kind="sharp_rise", status="sent", idempotency_key="gallery-a",
                         created_at=now - timedelta(days=9), sent_at=now - timedelta(days=9))
    Intervention.objects.create(customer=clara, action="call", note="Talked it through", created_by=shop["ana"].user,
                                outcome="retained", outcome_by=shop["ana"].user, outcome_at=now - timedelta(days=6),
                                created_at=now - timedelta(days=8))
    return clara


@pytest.mark.parametrize("viewport,suffix", [(DESKTOP, "1280"), (PHONE, "390")])
def test_every_crm_page_at_both_widths(browser, live_server, shop, screenshots, viewport, suffix):
    from playwright.sync_api import expect

    from crm_plugin.models import ModelVersion

    base = live_server.url
    clara = _marked_customer(shop)
    elif_ = shop["customers"]["Elif Yilmaz"]  # in Ben's book
    weaker = ModelVersion.objects.get(name="logreg-2026-11-20")

    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    console = ConsoleLog(page)

    page.goto(f"{base}/login/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert _sideways(page) <= 1
    page.screenshot(path=str(screenshots / f"gallery-login-{suffix}.png"), full_page=True)
    icon = page.request.get(f"{base}/favicon.ico")  # browsers ask for it on their own
    assert icon.ok and icon.headers["content-type"] in ("image/x-icon", "image/vnd.microsoft.icon")

    sign_in(page, base, "ana")
    pages = [
        ("worklist", "/", "At-risk customers"),
        ("customer", f"/customers/{clara.pk}/", "Clara Quinn"),
        ("interventions", "/interventions/", "Interventions"),
        ("interventions-bad-dates", "/interventions/?date_from=2026-11-20&date_to=2026-11-01", "Interventions"),
        ("models", "/models/", "Model report"),
    ]
    for name, path, heading in pages:
        page.goto(base + path)
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        assert _sideways(page) <= 1, f"{name} scrolls sideways by {_sideways(page)}px at {suffix}"
        page.screenshot(path=str(screenshots / f"gallery-{name}-{suffix}.png"), full_page=True)
        if name == "customer":
            chart = page.locator("#history svg.chart:visible")
            expect(chart.locator("g.mark-order")).not_to_have_count(0)
            expect(chart.locator("g.mark-alert")).to_have_count(2)  # the shop's high-risk alert and this sharp rise
            expect(chart.locator("g.mark-action")).to_have_count(1)
            expect(page.locator("#history .chart-key:visible")).to_contain_text("Action logged (1)")
            if viewport is PHONE:
                # "Log action" is on the first screen, and the form comes before the score history.
                expect(page.locator(".risk-block .jump-log")).to_be_in_viewport()
                assert page.locator("#log-action").bounding_box()["y"] < page.locator("#history").bounding_box()["y"]
            page.locator("#history").screenshot(path=str(screenshots / f"gallery-customer-chart-{suffix}.png"))
        if name == "interventions-bad-dates":
            expect(page.locator("#id_date_from_error")).to_contain_text("After “To” (1 Nov 2026)")
    assert console.errors == []

    # Refusals: their own status, the page still in one piece.
    refused = page.goto(f"{base}/customers/{elif_.pk}/")
    assert refused.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    assert _sideways(page) <= 1
    page.screenshot(path=str(screenshots / f"gallery-403-{suffix}.png"), full_page=True)
    missing = page.goto(f"{base}/customers/999999/")
    assert missing.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    assert _sideways(page) <= 1
    page.screenshot(path=str(screenshots / f"gallery-404-{suffix}.png"), full_page=True)
    context.close()

    # The admin's confirm page for promoting a weaker version.
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    console = ConsoleLog(page)
    sign_in(page, base, "admin")
    page.goto(f"{base}/models/")
    page.get_by_role("link", name=f"Promote {weaker.name} to champion").click()
    expect(page.get_by_role("heading", name=f"Promote {weaker.name} to champion?")).to_be_visible()
    expect(page.locator(".warn")).to_contain_text("is weaker than the champion bert-2026-11-20 on validation")
    page.get_by_role("button", name=f"Promote {weaker.name}").click()  # without the tick
    expect(page.locator(".confirm-form .field-error")).to_contain_text("Tick the box to confirm the promotion.")
    assert _sideways(page) <= 1
    page.screenshot(path=str(screenshots / f"gallery-promote-{suffix}.png"), full_page=True)
    assert not ModelVersion.objects.get(pk=weaker.pk).is_champion
    page.get_by_label("Promote it anyway").check()
    page.get_by_role("button", name=f"Promote {weaker.name}").click()
    # The version has no model files in this shop: the registry refuses it, and the page says so.
    expect(page.locator(".msg-error")).to_contain_text(weaker.name)
    assert ModelVersion.objects.get(is_champion=True).name == "bert-2026-11-20"
    # The one refusal the browser logs: the unticked form's 400.
    assert [e.split(" @ ")[0] for e in console.errors] == [
        "error: Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    context.close()
