"""Fixtures for the CRM page tests: owners, a manager, an admin, a champion model version."""
from __future__ import annotations

import pytest

from tests.crm_plugin.factories import AccountOwnerFactory, ModelVersionFactory, UserFactory


@pytest.fixture(autouse=True)
def _fresh_loop_cache():
    """The closed-loop report and next-best-action model are cached by a data fingerprint; SQLite
    reuses ids after a test's rollback, so one test's cached report must not reach the next."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def version(db):
    return ModelVersionFactory(name="logreg-2026-11", is_champion=True)


@pytest.fixture
def ana(db):
    return AccountOwnerFactory(user=UserFactory(username="ana"), name="Ana")


@pytest.fixture
def ben(db):
    return AccountOwnerFactory(user=UserFactory(username="ben"), name="Ben")


@pytest.fixture
def maria(db):
    return AccountOwnerFactory(user=UserFactory(username="maria"), name="Maria", is_manager=True)


@pytest.fixture
def admin_user(db):
    user = UserFactory(username="boss")
    user.is_superuser = user.is_staff = True
    user.save()
    return user


@pytest.fixture
def ana_client(client, ana):
    client.force_login(ana.user)
    return client
