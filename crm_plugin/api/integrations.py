"""Integration users: machine accounts that feed shop events into the API with a token.

Importing events also creates customers and sets their name, email, segment and owner, so it
needs the `crm_plugin.import_events` permission, which people's accounts do not have.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Permission
from django.core.exceptions import ValidationError
from django.db import transaction
from rest_framework.authtoken.models import Token

from crm_plugin.errors import CrmError
from crm_plugin.models import AccountOwner

IMPORT_PERMISSION = "crm_plugin.import_events"


@dataclass(frozen=True)
class IntegrationAccess:
    """An integration user and its API token; `created` / `token_created` say what was new."""

    user: AbstractBaseUser
    token: str
    created: bool
    token_created: bool


def _refusal(user: AbstractBaseUser) -> str | None:
    """Why an existing account cannot become (or stay) an integration user, if it cannot."""
    if not user.is_active:
        return "is deactivated; reactivate it in the admin if it is the integration, or choose another name"
    if user.is_staff or user.is_superuser:
        return "is a staff account; integrations get their own account"
    if AccountOwner.objects.filter(user=user).exists():
        return "belongs to an account owner; integrations get their own account"
    if user.has_usable_password():
        return "can sign in with a password, so it is a person's account; integrations get their own account"
    return None


@transaction.atomic
def integration_create(*, name: str, rotate_token: bool = False) -> IntegrationAccess:
    """Create the integration user `name` with the import permission and a token, or return it.

    Idempotent: run again, it returns the same user and token; `rotate_token` replaces the token
    (the old one stops working at once). The account has no password, so it cannot sign in to
    the CRM; it only holds the token. Refuses a name that belongs to a person's account.
    """
    User = get_user_model()
    name = (name or "").strip()
    if not name:
        raise CrmError("Give the integration a name, e.g. shop-feed.", code="invalid_name")
    username_field = User._meta.get_field(User.USERNAME_FIELD)
    try:
        username_field.run_validators(name)
    except ValidationError as exc:
        raise CrmError(f"{name!r} is not a valid user name: {' '.join(exc.messages)}", code="invalid_name") from None
    permission = Permission.objects.filter(content_type__app_label="crm_plugin", codename="import_events").first()
    if permission is None:
        raise CrmError("The import permission does not exist yet: run `manage.py migrate` first.", code="not_migrated")

    user = User.objects.select_for_update().filter(**{User.USERNAME_FIELD: name}).first()
    created = user is None
    if created:
        user = User(**{User.USERNAME_FIELD: name})
        user.set_unusable_password()
        user.save()
    elif (reason := _refusal(user)) is not None:
        raise CrmError(f"User {name!r} already exists and {reason}.", code="not_an_integration")
    user.user_permissions.add(permission)

    token_created = False
    if rotate_token:
        Token.objects.filter(user=user).delete()
    token = Token.objects.filter(user=user).first()
    if token is None:
        token = Token.objects.create(user=user)
        token_created = True
    return IntegrationAccess(user=user, token=token.key, created=created, token_created=token_created)
