"""Every command a page tells people to run exists: an empty state that names a missing command is a dead end."""
from __future__ import annotations

import re

from django.conf import settings
from django.core.management import get_commands


def test_pages_name_only_commands_that_exist():
    commands = set(get_commands())
    named = {}
    for folder in settings.TEMPLATES[0]["DIRS"]:
        for template in folder.rglob("*.html"):
            for name in re.findall(r"manage\.py ([a-z_]+)", template.read_text()):
                named.setdefault(name, template.name)
    assert named, "no template names a command: the pattern is stale"
    missing = {name: where for name, where in named.items() if name not in commands}
    assert not missing, f"pages name commands that do not exist: {missing}"
