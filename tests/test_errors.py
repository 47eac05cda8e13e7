"""docs/errors.md lists every user error the tests assert, and nothing they do not.

Each test module that asserts rows of the table says which in a module-level ``DOCUMENTED`` set (the
error cases by concern: test_errors_data, test_errors_checkpoints, test_errors_outputs,
test_config_errors; and the modules of each feature: serve, precision, calibration, corpus...). The
check imports every ``tests/test_*.py`` and collects those sets, so a new module's rows count without
being listed here, and a row that no module claims, or a claim with no row, fails.
"""

from __future__ import annotations

import importlib
import re

from helpers import ROOT

DOCS = ROOT / "docs" / "errors.md"


def documented_by_tests() -> dict[str, str]:
    """Row id -> the test module that claims it, over every test module's ``DOCUMENTED``."""
    claims: dict[str, str] = {}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        module = importlib.import_module(path.stem)
        for row in getattr(module, "DOCUMENTED", ()):
            claims.setdefault(row, path.stem)
    return claims


def test_docs_table_has_a_row_per_case() -> None:
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", DOCS.read_text(encoding="utf-8"), flags=re.M))
    claims = documented_by_tests()
    assert sorted(documented - set(claims)) == [], "rows in docs/errors.md that no test module's DOCUMENTED claims"
    assert {row: where for row, where in claims.items() if row not in documented} == {}, (
        "rows claimed by tests but missing from docs/errors.md")
