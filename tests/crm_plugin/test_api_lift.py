"""GET /api/lift/: a query parameter out of range is a 400 in the API's shape, never an overflow."""
import pytest
from rest_framework.test import APIClient

from tests.crm_plugin.factories import AccountOwnerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager_api():
    api = APIClient()
    api.force_authenticate(AccountOwnerFactory(is_manager=True).user)
    return api


@pytest.mark.parametrize(("raw", "message"), [
    ("99999999", "The outcome window must be between 1 and 3,650 days, not 99999999."),
    ("0", "The outcome window must be between 1 and 3,650 days, not 0."),
    ("-5", "The outcome window must be between 1 and 3,650 days, not -5."),
    ("soon", "A whole number of days, not 'soon'."),
    ("9" * 5000, "A whole number of days, not '99999999999999999999...'."),
])
def test_outcome_days_out_of_range_is_a_400_naming_the_parameter(manager_api, raw, message):
    response = manager_api.get("/api/lift/", {"outcome_days": raw})
    assert response.status_code == 400
    assert response.json() == {"detail": message,
                               "errors": [{"row": None, "field": "outcome_days", "message": message}]}


def test_outcome_days_at_the_bounds_is_answered(manager_api):
    for days in ("1", "3650"):
        response = manager_api.get("/api/lift/", {"outcome_days": days})
        assert response.status_code == 200, response.content
        assert "lift" in response.json()
