"""Template filters for the CRM pages: money in the shop's currency, changes in points, one date format,
and who sees the links to pages not everyone may open."""
from django import template

from crm_plugin import formatting
from crm_plugin.loop.selectors import loop_report_visible

register = template.Library()


@register.filter
def money(value, digits=0):
    return formatting.money(value, digits=int(digits))


@register.filter
def pts(value):
    return formatting.points(value)


@register.filter
def day(value):
    return formatting.day(value)


@register.filter
def sees_loop_report(user) -> bool:
    """Managers and staff: the Impact page compares every owner's book (the page's and `/api/lift/`'s rule)."""
    return loop_report_visible(user=user)
