"""The CRM in a real browser: sign in, work the list, log an action, see it everywhere; no console errors."""
from __future__ import annotations

import re

import pytest

from tests.browser.conftest import PASSWORD, ConsoleLog

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


def test_owner_works_the_list_and_logs_an_action(browser, live_server, shop, screenshots):
    from playwright.sync_api import expect

    base = live_server.url
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    console = ConsoleLog(page)

    sign_in(page, base, "ana")
    expect(page.get_by_role("heading", name="At-risk customers")).to_be_visible()
    rows = page.locator("table.worklist tbody tr")
    expect(rows).to_have_count(6)  # Ana's book only, at risk: not the lapsed or the low-risk customer
    expect(page.locator("table.worklist")).not_to_contain_text("Elif Yilmaz")  # Ben's customer
    expect(rows.first.locator("svg.spark")).to_be_visible()
    page.screenshot(path=str(screenshots / "worklist-1280.png"), full_page=True)

    page.get_by_label("Band").select_option("high")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"band=high"))
    bands = page.locator("table.worklist tbody tr td[data-label='Churn risk'] .badge").all_inner_texts()
    assert bands and set(bands) == {"High"}

    first = page.locator("table.worklist tbody tr a.strong").first
    name = first.inner_text()
    first.click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(page.locator(".reasons")).to_contain_text("No order for 64 days")
    expect(page.locator("#timeline")).to_contain_text("Still waiting for my refund")
    # No action has an outcome to learn from yet, and the page says so instead of guessing.
    expect(page.locator("#next-action")).to_contain_text("No suggestion yet: no action has 30 treated")

    page.get_by_label("What did you do?").select_option("call")
    page.get_by_label("Note", exact=True).fill("Called: replacement kettle on its way")
    page.get_by_role("button", name="Log action").click()
    expect(page.locator(".msg-success")).to_contain_text(f"Logged: Call for {name}.")
    expect(page.locator("#interventions")).to_contain_text("replacement kettle on its way")
    page.screenshot(path=str(screenshots / "customer-1280.png"), full_page=True)

    page.get_by_role("link", name="Interventions").first.click()
    expect(page.get_by_role("heading", name="Interventions")).to_be_visible()
    expect(page.locator("table.grid")).to_contain_text("replacement kettle on its way")
    page.screenshot(path=str(screenshots / "interventions-1280.png"), full_page=True)

    page.get_by_role("link", name="Models").click()
    expect(page.get_by_role("heading", name="Model report")).to_be_visible()
    expect(page.locator("svg.chart")).to_have_count(5)
    expect(page.locator("#lift")).to_have_count(0)  # lift and threshold are for managers
    expect(page.locator("#funnel")).to_contain_text("No alert has been delivered to you yet.")
    page.screenshot(path=str(screenshots / "models-1280.png"), full_page=True)

    assert console.errors == []

    # Another owner's customer: refused, and nothing of them shown.
    other = shop["customers"]["Elif Yilmaz"]
    response = page.goto(f"{base}/customers/{other.pk}/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("Elif Yilmaz")
    context.close()


def test_pages_at_phone_width(browser, live_server, shop, screenshots):
    from playwright.sync_api import expect

    base = live_server.url
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    console = ConsoleLog(page)
    sign_in(page, base, "maria")
    clara = shop["customers"]["Clara Quinn"]
    for name, path in [("worklist", "/"), ("customer", f"/customers/{clara.pk}/"), ("interventions", "/interventions/"),
                       ("models", "/models/"), ("impact", "/impact/")]:
        page.goto(base + path)
        expect(page.locator("main h1")).to_be_visible()
        # Nothing wider than the phone: no sideways scrolling of the page itself.
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{name} scrolls sideways by {overflow}px"
        page.screenshot(path=str(screenshots / f"{name}-390.png"), full_page=True)
    assert console.errors == []
    context.close()


def test_admin_sees_promote_and_admin_link(browser, live_server, shop):
    from playwright.sync_api import expect

    base = live_server.url
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    console = ConsoleLog(page)
    sign_in(page, base, "admin")
    expect(page.get_by_role("link", name="Admin")).to_have_attribute("href", "/admin/")
    page.goto(f"{base}/models/")
    expect(page.get_by_role("link", name="Promote lightgbm-2026-11-20 to champion")).to_be_visible()
    assert console.errors == []
    context.close()


def test_manager_reads_the_closed_loop_and_an_owner_sees_the_suggestion(browser, live_server, loop_shop, screenshots):
    from playwright.sync_api import expect

    base = live_server.url
    for viewport, suffix in [(DESKTOP, "1280"), (PHONE, "390")]:
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        console = ConsoleLog(page)
        sign_in(page, base, "maria")
        page.goto(f"{base}/models/")
        # The lift and the funnel per owner are on the Impact page (tests/browser/test_impact.py).
        expect(page.locator("#lift")).to_have_count(0)
        expect(page.locator("#impact-link").get_by_role("link", name="Impact")).to_have_attribute("href", "/impact/")
        expect(page.locator("#threshold")).to_contain_text("Most profitable threshold")
        expect(page.locator("#threshold")).to_contain_text("Measured so far: alerted customers churned")
        expect(page.locator("#threshold svg.chart:visible")).to_have_count(1)  # the wide or the phone chart
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"models scrolls sideways by {overflow}px at {suffix}"
        page.screenshot(path=str(screenshots / f"models-loop-{suffix}.png"), full_page=True)
        assert console.errors == []
        context.close()

    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    console = ConsoleLog(page)
    sign_in(page, base, "ana")
    page.goto(f"{base}/customers/{loop_shop['suggested'].pk}/")
    card = page.locator("#next-action")
    expect(card).to_contain_text("Coupon")
    expect(card).to_contain_text("coupon: 80% kept vs 60% held out, n=50 (segment regular)")
    page.screenshot(path=str(screenshots / "customer-suggestion-1280.png"), full_page=True)
    assert console.errors == []
    context.close()
