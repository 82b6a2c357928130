"""List model versions with their validation metrics; the champion is marked with *."""
from django.core.management.base import BaseCommand

from crm_plugin.models import ModelVersion


def _f(value) -> str:
    return "-" if value is None else f"{value:.3f}"


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **opts):
        versions = ModelVersion.objects.order_by("-created_at")
        if not versions:
            self.stdout.write("no model versions yet: run `python manage.py train`")
            return
        self.stdout.write(f"  {'name':44} {'family':16} {'as of':10} {'PR-AUC':>7} {'ROC-AUC':>7} {'Brier':>7} {'ECE':>7}")
        for v in versions:
            m = v.metrics or {}
            mark = "*" if v.is_champion else " "
            as_of = f"{v.trained_as_of:%Y-%m-%d}" if v.trained_as_of else "-"
            self.stdout.write(f"{mark} {v.name:44} {v.family:16} {as_of:10} {_f(m.get('pr_auc')):>7} "
                              f"{_f(m.get('roc_auc')):>7} {_f(m.get('brier')):>7} {_f(m.get('ece')):>7}")
        champion = versions.filter(is_champion=True).first()
        self.stdout.write(f"champion: {champion.name if champion else 'none'}")
