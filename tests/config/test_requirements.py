"""Everything the product imports is in production's requirements (requirements/base.txt).

`make demo` installs base.txt only; the demo shop generator once imported Faker, which only the
tests' requirements had, so `make demo` failed on a fresh checkout.
"""
import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("config", "crm_plugin", "churnbot", "demo", "mlcore", "pipeline")


def _imported_top_level_modules() -> dict[str, str]:
    found: dict[str, str] = {}
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                         else [])
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_of_the_product_is_in_base_requirements():
    pinned = {_normalise(line.split("==")[0]) for line in (ROOT / "requirements/base.txt").read_text().splitlines()
              if line and not line.startswith(("#", "-"))}
    distributions = packages_distributions()
    ours = {p.name for p in ROOT.iterdir() if p.is_dir() or p.suffix == ".py"} | {Path(p).stem for p in PRODUCT}
    missing = []
    for module, where in sorted(_imported_top_level_modules().items()):
        if module in sys.stdlib_module_names or module in ours or module == "__future__":
            continue
        dists = distributions.get(module)
        if not dists:
            missing.append(f"{module} ({where}: no installed distribution provides it)")
        elif not any(_normalise(d) in pinned for d in dists):
            missing.append(f"{module} ({where}: from {', '.join(dists)}, not in requirements/base.txt)")
    assert not missing, "imported by the product but not in production's requirements:\n" + "\n".join(missing)
