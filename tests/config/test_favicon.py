"""/favicon.ico, which browsers request on their own: answered with the shop's icon, never a 404."""
from __future__ import annotations

from pathlib import Path

from django.contrib.staticfiles import finders
from django.templatetags.static import static


def test_favicon_ico_redirects_to_the_icon_in_static(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == static("favicon.ico")
    assert "max-age=86400" in response["Cache-Control"]
    icon = finders.find("favicon.ico")
    assert icon is not None
    assert Path(icon).read_bytes()[:4] == b"\x00\x00\x01\x00"  # an ICO file, the format browsers expect there
    assert client.post("/favicon.ico").status_code == 405


def test_pages_name_their_icons_so_browsers_need_not_guess(client):
    page = client.get("/login/").content.decode()
    assert f'<link rel="icon" href="{static("favicon.ico")}" sizes="32x32">' in page
    assert f'<link rel="icon" href="{static("favicon.svg")}" type="image/svg+xml">' in page
    assert finders.find("favicon.svg") is not None
