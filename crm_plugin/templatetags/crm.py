"""Template filters for the CRM pages: money in the shop's currency, changes in points, one date format."""
from django import template

from crm_plugin import formatting

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
