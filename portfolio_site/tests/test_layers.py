"""The map's import rule, checked on the code: an app imports only the apps before it in the list
(accounts → clients → ledger → holdings → trading), and no app imports the project's top (urls, settings, health)."""

import ast
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
LAYERS = ["accounts", "clients", "ledger", "holdings", "trading"]
TOP = {"portfolio_site.urls", "portfolio_site.settings", "portfolio_site.health"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def app_sources(app: str) -> list[Path]:
    return [path for path in sorted((ROOT / app).rglob("*.py")) if "tests" not in path.parts]


@pytest.mark.parametrize("app", LAYERS)
def test_an_app_imports_only_the_apps_before_it(app: str) -> None:
    later = set(LAYERS[LAYERS.index(app) + 1 :])
    wrong = sorted(
        f"{path.relative_to(ROOT)} imports {module}"
        for path in app_sources(app)
        for module in imported_modules(path)
        if module.split(".")[0] in later
    )

    assert not wrong, f"{app} may import only {LAYERS[: LAYERS.index(app)]}: " + "; ".join(wrong)


@pytest.mark.parametrize("app", LAYERS)
def test_no_app_imports_the_projects_top(app: str) -> None:
    wrong = sorted(
        f"{path.relative_to(ROOT)} imports {module}"
        for path in app_sources(app)
        for module in imported_modules(path)
        if any(module == top or module.startswith(f"{top}.") for top in TOP)
    )

    assert not wrong, "; ".join(wrong)


def test_ledger_names_no_holdings_model_even_by_string() -> None:
    wrong = [str(path.relative_to(ROOT)) for path in app_sources("ledger") if '"holdings.' in path.read_text()]

    assert not wrong, f"ledger refers to holdings in {wrong}"
