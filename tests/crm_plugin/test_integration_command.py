"""`manage.py integration_create NAME`: an account for a shop feed, allowed to import, with its token."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from crm_plugin.models import Event
from tests.crm_plugin.factories import AccountOwnerFactory, UserFactory

pytestmark = pytest.mark.django_db

ORDER = {"customer_id": "C1", "kind": "order", "occurred_at": "2026-11-02T10:15:00Z", "amount": "45.00"}


def create(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("integration_create", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue().strip()


def post_with(token: str):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return api.post("/api/events/", {"events": [ORDER]}, format="json")


def test_creates_an_integration_that_can_import_and_cannot_sign_in():
    token, note = create("shop-feed")
    assert len(token) == 40 and "\n" not in token  # stdout is the token alone, for scripts
    assert note == "Created integration user 'shop-feed'; it may import events through the API and cannot sign in."
    assert post_with(token).status_code == 201
    assert Event.objects.count() == 1
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username="shop-feed")
    assert user.has_perm("crm_plugin.import_events")
    assert not user.has_usable_password() and not user.is_staff


def test_running_it_again_prints_the_same_token_and_rotating_replaces_it():
    first, _ = create("shop-feed")
    again, note = create("shop-feed")
    assert again == first and "this is its current token" in note
    rotated, note = create("shop-feed", "--rotate-token")
    assert rotated != first and "the old one no longer works" in note
    assert post_with(first).status_code == 401
    assert post_with(rotated).status_code == 201


@pytest.mark.parametrize(("make", "reason"), [
    (lambda: UserFactory(username="ana"), "can sign in with a password"),
    (lambda: UserFactory(username="ana", is_staff=True), "is a staff account"),
    (lambda: UserFactory(username="ana", is_active=False), "is deactivated"),
])
def test_a_persons_account_is_not_turned_into_an_integration(make, reason):
    person = make()
    with pytest.raises(CommandError, match=f"User 'ana' already exists and {reason}"):
        create("ana")
    person.refresh_from_db()
    assert not person.has_perm("crm_plugin.import_events")


def test_an_account_owner_without_a_password_is_refused_too():
    owner = AccountOwnerFactory(user=UserFactory(username="ana"))
    owner.user.set_unusable_password()
    owner.user.save()
    with pytest.raises(CommandError, match="belongs to an account owner"):
        create("ana")


@pytest.mark.parametrize("name", ["", "   ", "shop feed!"])
def test_a_bad_name_is_a_clear_error(name):
    with pytest.raises(CommandError, match="Give the integration a name|is not a valid user name"):
        create(name)
