"""Sign-in throttling (django-axes): wrong passwords lock one username on one address for a while."""
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from tests.crm_plugin.factories import AccountOwnerFactory, UserFactory

pytestmark = pytest.mark.django_db

RIGHT = "pass-word-123"
LOCKED = "Too many failed sign-in attempts"


@pytest.fixture
def ana():
    return AccountOwnerFactory(user=UserFactory(username="ana"), name="Ana").user


def sign_in(client, password, username="ana", **extra):
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_five_wrong_passwords_then_the_right_one_is_refused_with_the_lockout_page(client, ana, settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    for _ in range(4):
        response = sign_in(client, "wrong")
        assert response.status_code == 200
        assert b"Please enter a correct username and password" in response.content
    fifth = sign_in(client, "wrong")
    assert fifth.status_code == 429 and LOCKED.encode() in fifth.content
    response = sign_in(client, RIGHT)
    assert response.status_code == 429
    page = " ".join(response.content.decode().split())
    assert LOCKED in page
    assert "After 5 wrong passwords for <strong>ana</strong> from this address, signing in is paused for 15 minutes" in page
    assert "Even the right password is refused until then." in page
    assert not signed_in(client)


def test_the_lock_is_for_that_username_from_that_address(client, ana):
    UserFactory(username="ben")
    for _ in range(5):
        sign_in(client, "wrong", REMOTE_ADDR="203.0.113.9")
    assert sign_in(client, RIGHT, REMOTE_ADDR="203.0.113.9").status_code == 429
    assert sign_in(client, RIGHT, username="ben", REMOTE_ADDR="203.0.113.9").status_code == 302  # a colleague there
    client.logout()
    assert sign_in(client, RIGHT, REMOTE_ADDR="198.51.100.7").status_code == 302  # ana elsewhere
    assert signed_in(client)


def test_behind_a_proxy_the_forwarded_address_counts(client, ana, settings):
    settings.LOGIN_TRUSTED_PROXIES = 1
    for _ in range(5):  # the attacker also forges a left-hand X-Forwarded-For entry: ignored
        sign_in(client, "wrong", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9")
    assert sign_in(client, RIGHT, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 429
    assert sign_in(client, RIGHT, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 302


def test_a_right_password_resets_the_count(client, ana):
    for _ in range(4):
        sign_in(client, "wrong")
    assert sign_in(client, RIGHT).status_code == 302
    client.logout()
    for _ in range(4):
        sign_in(client, "wrong")
    assert sign_in(client, RIGHT).status_code == 302


def test_the_admin_sign_in_is_throttled_too(client):
    UserFactory(username="boss", is_staff=True, is_superuser=True)
    for _ in range(5):
        client.post("/admin/login/", {"username": "boss", "password": "wrong"})
    response = client.post("/admin/login/", {"username": "boss", "password": RIGHT})
    assert response.status_code == 429 and LOCKED.encode() in response.content


def test_test_logins_and_force_login_still_work(client, ana):
    assert client.login(username="ana", password=RIGHT)
    client.logout()
    client.force_login(ana)
    assert client.get("/").status_code == 200


def test_api_tokens_are_not_affected_by_a_locked_sign_in(client):
    boss = AccountOwnerFactory(user=UserFactory(username="maria"), is_manager=True).user
    for _ in range(5):
        sign_in(client, "wrong", username="maria")
    assert sign_in(client, RIGHT, username="maria").status_code == 429
    from rest_framework.authtoken.models import Token

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=boss).key}")
    assert api.get("/api/lift/").status_code == 200
