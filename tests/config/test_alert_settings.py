"""ALERT_MAX_DAYS_SINCE_ORDER: defaults to the label horizon, 0 switches it off, bad values refuse to start."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test starts manage.py in a new process

ROOT = Path(__file__).resolve().parents[2]
PRINT = "from django.conf import settings; print(settings.ALERT_MAX_DAYS_SINCE_ORDER)"


def _shell(**env):
    full_env = {k: v for k, v in os.environ.items() if k not in {"ALERT_MAX_DAYS_SINCE_ORDER", "CHURN_HORIZON_DAYS"}}
    full_env.update(env)
    return subprocess.run([sys.executable, "manage.py", "shell", "-c", PRINT], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


def _last_line(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_defaults_to_the_churn_horizon_and_reads_the_environment():
    assert _last_line(_shell()) == "90"
    assert _last_line(_shell(CHURN_HORIZON_DAYS="60")) == "60"
    assert _last_line(_shell(CHURN_HORIZON_DAYS="60", ALERT_MAX_DAYS_SINCE_ORDER="0")) == "0"


def test_a_negative_or_non_numeric_value_is_refused_with_its_name():
    negative = _shell(ALERT_MAX_DAYS_SINCE_ORDER="-5")
    assert negative.returncode != 0 and "ALERT_MAX_DAYS_SINCE_ORDER must be 0 (no limit)" in negative.stderr
    words = _shell(ALERT_MAX_DAYS_SINCE_ORDER="ninety")
    assert words.returncode != 0 and "ALERT_MAX_DAYS_SINCE_ORDER must be a whole number" in words.stderr
