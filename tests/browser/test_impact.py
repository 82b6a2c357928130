"""The Impact page in a real browser: maria (manager) opens it from the top bar and reads whether the
alerts work (lift with its interval, revenue kept, the funnel per owner, week by week), then clicks an
owner through to their actions; an account manager has no link and gets 403. At 1280 and 390 px."""
from __future__ import annotations

import re

import pytest

from tests.browser.conftest import ConsoleLog
from tests.browser.test_crm_flow import DESKTOP, PHONE, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _no_sideways_scroll(page, what: str) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1, f"{what} scrolls sideways by {overflow}px"


@pytest.mark.parametrize("viewport,suffix", [(DESKTOP, "1280"), (PHONE, "390")])
def test_maria_opens_impact_from_the_nav_and_sees_lift_and_the_funnel_per_owner(browser, live_server, loop_shop,
                                                                                 screenshots, viewport, suffix):
    from playwright.sync_api import expect

    base = live_server.url
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    console = ConsoleLog(page)
    sign_in(page, base, "maria")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Impact").click()
    expect(page.get_by_role("heading", name="Are the alerts working?")).to_be_visible()
    expect(page.get_by_role("link", name="Impact")).to_have_attribute("aria-current", "page")

    lift = page.locator("#lift")
    # 29 of the 95 alerted churned vs 20 of the 50 held out.
    expect(lift.locator(".headline")).to_contain_text("30.5% of alerted churned (n=95) vs 40.0% held out (n=50): lift +9.5 pts")
    expect(lift.locator(".headline")).to_contain_text("95% CI")
    expect(lift.locator("tr", has_text="coupon").first).to_contain_text("+20.0 pts")
    expect(lift.locator("tr", has_text="vip").first).to_contain_text("not enough data")
    # 40 coupon customers recorded as retained, 500 a year each.
    expect(page.locator("#revenue .tp.recorded")).to_contain_text("€20,000 a year")
    expect(page.locator("#revenue .tp.implied .tp-value")).to_contain_text("€")

    funnel = page.locator("#funnel table.funnel")
    expect(funnel.locator("tbody tr", has_text="Ana Ortiz")).to_contain_text("55")
    expect(funnel.locator("tbody tr", has_text="Ben Brooks")).to_contain_text("40")
    expect(funnel.locator("tfoot tr")).to_contain_text("All owners")
    expect(page.locator("#weekly svg.chart:visible")).to_have_count(1)  # the wide or the phone chart
    expect(page.locator("#weekly table.weekly tbody tr")).to_have_count(12)

    _no_sideways_scroll(page, f"impact at {suffix}")
    if viewport is PHONE:
        # The owners' table keeps its columns and scrolls inside its own box instead of the page.
        wrap = page.locator("#funnel .table-wrap")
        assert wrap.evaluate("el => el.scrollWidth > el.clientWidth"), "the funnel should scroll sideways in its box"
        assert wrap.evaluate("el => getComputedStyle(el).overflowX") == "auto"
    page.screenshot(path=str(screenshots / f"impact-maria-{suffix}.png"), full_page=True)

    funnel.get_by_role("link", name="Ana Ortiz").click()
    page.wait_for_url(re.compile(r"/interventions/\?owner=\d+"))
    expect(page.get_by_role("heading", name="Interventions")).to_be_visible()
    expect(page.get_by_label("Owner")).to_have_value(str(loop_shop["ana"].pk))
    expect(page.locator("main")).to_contain_text("Coupon")
    assert console.errors == []
    context.close()


def test_ana_has_no_impact_link_and_is_refused(browser, live_server, shop, screenshots):
    from playwright.sync_api import expect

    base = live_server.url
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, base, "ana")
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Impact")).to_have_count(0)
    response = page.goto(f"{base}/impact/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Your own alerts, actions and outcomes are on the Models page.")
    page.screenshot(path=str(screenshots / "impact-refused-1280.png"))
    context.close()
