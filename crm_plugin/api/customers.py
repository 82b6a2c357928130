"""REST endpoints for reading customers and their scores, and for logging retention actions.

The same visibility as the CRM pages and Slack (`crm_plugin.customers.selectors`): an account
manager reads and changes only their own book; a manager or superuser every book. Writes go
through the same services as the pages and Slack.
"""
from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from crm_plugin.customers.selectors import customer_list_visible_to
from crm_plugin.errors import CrmError
from crm_plugin.formatting import reasons_for_people
from crm_plugin.interventions.services import intervention_create, intervention_record_outcome
from crm_plugin.models import ChurnScore, Customer, Intervention


class CustomerOutputSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.email", default=None, help_text="the owner's email")
    probability = serializers.FloatField(source="latest_score.probability", default=None)
    band = serializers.CharField(source="latest_score.band", default=None)
    scored_as_of = serializers.DateTimeField(source="latest_score.as_of", default=None)
    stage = serializers.CharField(source="lifecycle_stage")
    reasons = serializers.SerializerMethodField(help_text="the reasons in words, strongest first")

    class Meta:
        model = Customer
        fields = ["id", "external_id", "name", "email", "segment", "owner", "value", "probability", "band",
                  "scored_as_of", "stage", "risk_change_7d", "reasons"]

    def get_reasons(self, customer) -> list[str]:
        score = customer.latest_score
        return [r["text"] for r in reasons_for_people(score.reasons if score else None)]


class CustomerListApi(generics.ListAPIView):
    serializer_class = CustomerOutputSerializer

    @extend_schema(operation_id="customers_list", summary="Customers you may see, with their latest score",
                   parameters=[OpenApiParameter("owner", str, description="the owner's email"),
                               OpenApiParameter("band", str, enum=ChurnScore.Band.values),
                               OpenApiParameter("stage", str, enum=Customer.Stage.values)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Customer]:
        params = self.request.query_params
        qs = customer_list_visible_to(user=self.request.user).select_related("owner", "latest_score")
        if params.get("band"):
            if params["band"] not in ChurnScore.Band.values:
                raise ValidationError({"band": f"One of {', '.join(ChurnScore.Band.values)}."})
            qs = qs.filter(latest_score__band=params["band"])
        if params.get("stage"):
            if params["stage"] not in Customer.Stage.values:
                raise ValidationError({"stage": f"One of {', '.join(Customer.Stage.values)}."})
            qs = qs.filter(lifecycle_stage=params["stage"])
        if params.get("owner"):
            qs = qs.filter(owner__email__iexact=params["owner"])
        return qs.order_by("pk")


def _visible_customer(request, pk: int) -> Customer:
    customer = Customer.objects.select_related("owner", "latest_score").filter(pk=pk).first()
    if customer is None:
        raise NotFound("No such customer.")
    if not customer_list_visible_to(user=request.user).filter(pk=pk).exists():
        raise PermissionDenied("This customer is in another owner's book.")
    return customer


class CustomerDetailApi(APIView):
    @extend_schema(operation_id="customers_retrieve", responses={200: CustomerOutputSerializer})
    def get(self, request, pk: int):
        return Response(CustomerOutputSerializer(_visible_customer(request, pk)).data)


class InterventionOutputSerializer(serializers.ModelSerializer):
    customer = serializers.IntegerField(source="customer_id")
    created_by = serializers.CharField(source="created_by.username", default=None)

    class Meta:
        model = Intervention
        fields = ["id", "customer", "action", "note", "created_by", "created_at", "source", "follow_up_on",
                  "outcome", "outcome_note", "outcome_at"]


class InterventionInputSerializer(serializers.Serializer):
    customer = serializers.IntegerField()
    action = serializers.CharField()
    note = serializers.CharField(required=False, allow_blank=True, default="")
    outcome = serializers.CharField(required=False, allow_blank=True, default="")
    follow_up_on = serializers.DateField(required=False, allow_null=True, default=None)


class OutcomeInputSerializer(serializers.Serializer):
    outcome = serializers.CharField()
    note = serializers.CharField(required=False, allow_blank=True, default="")


def _service_error(exc: CrmError):
    if exc.code == "forbidden":
        return PermissionDenied(exc.message)
    return ValidationError({"detail": exc.message, "code": exc.code})


class InterventionListApi(generics.ListAPIView):
    serializer_class = InterventionOutputSerializer

    def get_queryset(self):
        qs = Intervention.objects.filter(customer__in=customer_list_visible_to(user=self.request.user))
        if self.request.query_params.get("customer", "").isdigit():
            qs = qs.filter(customer_id=int(self.request.query_params["customer"]))
        return qs.select_related("created_by").order_by("-created_at", "-pk")

    @extend_schema(operation_id="interventions_create", request=InterventionInputSerializer,
                   responses={201: InterventionOutputSerializer})
    def post(self, request):
        data = InterventionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        customer = _visible_customer(request, data.validated_data["customer"])
        try:
            created = intervention_create(
                customer=customer, by=request.user, action=data.validated_data["action"],
                note=data.validated_data["note"], outcome=data.validated_data["outcome"],
                follow_up_on=data.validated_data["follow_up_on"], source=Intervention.Source.API,
            )
        except CrmError as exc:
            raise _service_error(exc) from exc
        return Response(InterventionOutputSerializer(created).data, status=201)


class InterventionOutcomeApi(APIView):
    @extend_schema(operation_id="interventions_set_outcome", request=OutcomeInputSerializer,
                   responses={200: InterventionOutputSerializer})
    def post(self, request, pk: int):
        target = Intervention.objects.filter(pk=pk).select_related("customer").first()
        if target is None:
            raise NotFound("No such intervention.")
        _visible_customer(request, target.customer_id)
        data = OutcomeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            done = intervention_record_outcome(intervention=target, by=request.user, outcome=data.validated_data["outcome"],
                                               note=data.validated_data["note"])
        except CrmError as exc:
            raise _service_error(exc) from exc
        return Response(InterventionOutputSerializer(done).data)
