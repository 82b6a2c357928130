"""factory_boy factories for the CRM models."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from crm_plugin.interventions.services import customer_last_action_refresh
from crm_plugin.models import AccountOwner, ChurnScore, Customer, Event, Intervention, ModelVersion


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@shop.example")
    password = factory.PostGenerationMethodCall("set_password", "pass-word-123")

    @classmethod
    def _after_postgeneration(cls, instance, create, results=None):
        if create and results:
            instance.save()  # store the hashed password


class AccountOwnerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AccountOwner

    user = factory.SubFactory(UserFactory)
    name = factory.LazyAttribute(lambda o: o.user.username.title())
    email = factory.LazyAttribute(lambda o: o.user.email)
    slack_user_id = factory.Sequence(lambda n: f"U{n:08d}")
    is_manager = False


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    external_id = factory.Sequence(lambda n: f"C{n:06d}")
    name = factory.Faker("name")
    email = factory.LazyAttribute(lambda o: f"{o.external_id.lower()}@mail.example")
    segment = "regular"
    owner = factory.SubFactory(AccountOwnerFactory)
    first_seen_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=400))


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    customer = factory.SubFactory(CustomerFactory)
    kind = Event.Kind.ORDER
    occurred_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=10))
    amount = Decimal("42.50")
    quantity = 1
    source_id = factory.Sequence(lambda n: f"test-event-{n}")


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelVersion

    name = factory.Sequence(lambda n: f"logreg-test-{n}")
    family = "logreg"
    artifact_path = factory.LazyAttribute(lambda o: f"versions/{o.name}")
    metrics = factory.LazyFunction(lambda: {"pr_auc": 0.5, "roc_auc": 0.7})


class ChurnScoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChurnScore

    customer = factory.SubFactory(CustomerFactory)
    model_version = factory.SubFactory(ModelVersionFactory)
    as_of = factory.LazyFunction(timezone.now)
    probability = 0.75
    band = ChurnScore.Band.HIGH
    reasons = factory.LazyFunction(lambda: [
        # The shape mlcore.reasons writes: a code, the model's sentence, the weight and the facts behind it.
        {"code": "no_recent_order", "text": "no order for 64 days (usually every 20)", "weight": 0.31,
         "evidence": {"days_since_last_order": 64, "usual_gap_days": 20, "last_order": "2026-09-01"}},
        {"code": "bad_review", "text": "1-star review 12 days ago: 'arrived broken'", "weight": 0.12,
         "evidence": {"rating": 1, "days_ago": 12, "quote": "arrived broken", "product": ""}},
    ])


class InterventionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Intervention
        skip_postgeneration_save = True  # the hook writes the customer, not this row

    customer = factory.SubFactory(CustomerFactory)
    action = Intervention.Action.CALL
    note = "Called, promised a follow-up."

    @factory.post_generation
    def stored_on_the_customer(obj, create, extracted, **kwargs):
        """The customer's last action, as logging one through the service leaves it."""
        if create:
            customer_last_action_refresh(customer_ids=[obj.customer_id])
