"""Request bodies: JSON too deeply nested for Python's parser is a client error, not a server error."""

import json

import pytest

pytestmark = pytest.mark.django_db


def test_json_nested_a_hundred_thousand_deep_gets_a_400_in_drfs_parse_error_shape(operations, api) -> None:
    body = "[" * 100_000 + "]" * 100_000
    response = api(operations).generic("POST", "/api/v1/transactions/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": "JSON parse error - the document is nested too deeply."}


def test_json_nested_a_few_levels_is_still_parsed(operations, api) -> None:
    body = json.dumps({"client": [[[1]]], "kind": "deposit"})
    response = api(operations).generic("POST", "/api/v1/transactions/", body, content_type="application/json")
    assert response.status_code == 400
    assert "client" in response.json()
