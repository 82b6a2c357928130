"""`manage.py import_events`: exit status, messages and idempotency as an operator sees them."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from crm_plugin.models import Event

ROOT = Path(__file__).resolve().parents[2]
GOOD = "customer_id,timestamp,amount\nC1,2026-01-05,10\nC2,2026-01-06,20\nC3,2026-01-07,30\n"
BAD_ROW_3 = "customer_id,timestamp,amount\nC1,2026-01-05,10\nC2,2026-01-06,20\nC3,06/01/2026,30\n"


@pytest.mark.django_db
def test_good_file_twice_gives_the_same_count(tmp_path, capsys):
    path = tmp_path / "tx.csv"
    path.write_text(GOOD)
    call_command("import_events", str(path), "--format", "transactions")
    assert "3 events added" in capsys.readouterr().out
    call_command("import_events", str(path), "--format", "transactions")
    assert "0 events added, 3 already imported" in capsys.readouterr().out
    assert Event.objects.count() == 3


@pytest.mark.django_db
def test_bad_row_raises_command_error_and_leaves_the_count(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text(BAD_ROW_3)
    with pytest.raises(CommandError, match=r"row 3 \(line 4\), column 'timestamp'"):
        call_command("import_events", str(path), "--format", "transactions")
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_missing_file(tmp_path):
    with pytest.raises(CommandError, match="No file at"):
        call_command("import_events", str(tmp_path / "nope.csv"), "--format", "csv")


@pytest.mark.slow
def test_exit_status_and_no_traceback(tmp_path):
    """Through the real command line, on its own SQLite file."""
    db = tmp_path / "cli.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}"}
    run = lambda *a: subprocess.run([sys.executable, "manage.py", *a], cwd=ROOT, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    assert run("migrate", "--noinput").returncode == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_ROW_3)
    result = run("import_events", str(bad), "--format", "transactions")
    assert result.returncode == 1
    assert "row 3 (line 4), column 'timestamp': '06/01/2026' is not a date" in result.stderr
    assert "Traceback" not in result.stderr
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    first = run("import_events", str(good), "--format", "transactions")
    second = run("import_events", str(good), "--format", "transactions")
    assert first.returncode == second.returncode == 0
    assert "3 events added" in first.stdout and "0 events added" in second.stdout


@pytest.mark.django_db
@pytest.mark.parametrize(("text", "expected"), [
    ("customer_id,kind,occurred_at,text\nC1,visit,2026-03-01,bad\x00text\n",
     r"row 1 \(line 2\), column 'text': contains a NUL character"),
    ("customer_id,kind,occurred_at,amount,amount\nC1,order,2026-03-01,1,2\n",
     r"line 1: column\(s\) 'amount' appear more than once in the header"),
])
def test_values_the_database_cannot_take_are_a_command_error(tmp_path, text, expected):
    """Not a database traceback (PostgreSQL refuses NUL), and not a silently dropped column."""
    path = tmp_path / "events.csv"
    path.write_text(text)
    with pytest.raises(CommandError, match=expected):
        call_command("import_events", str(path), "--format", "csv")
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_nul_on_the_command_line_exits_1_without_a_traceback(tmp_path, require_postgres):
    """Through the real command line, against the test database on PostgreSQL."""
    from urllib.parse import urlparse

    from django.db import connection

    url = urlparse(os.environ["DATABASE_URL"])._replace(path=f"/{connection.settings_dict['NAME']}").geturl()
    path = tmp_path / "events.jsonl"
    path.write_text('{"customer_id": "C1", "kind": "visit", "occurred_at": "2026-03-01", "text": "a\\u0000b"}\n')
    result = subprocess.run([sys.executable, "manage.py", "import_events", str(path), "--format", "jsonl"], cwd=ROOT,
                            env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "row 1, column 'text': contains a NUL character (\\u0000), which cannot be stored" in result.stderr
    assert "Traceback" not in result.stderr and "psycopg" not in result.stderr
