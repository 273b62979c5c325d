"""The published JSON Schemas accept every shipped file and reject what the checker rejects."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from .conftest import FLOWS

FLOW_SCHEMA = json.loads((FLOWS / "schema.json").read_text(encoding="utf-8"))
TRANSCRIPT_SCHEMA = json.loads((FLOWS / "transcript.schema.json").read_text(encoding="utf-8"))
BROKEN = Path(__file__).parent / "broken_flows"


def yaml(path: Path) -> object:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def test_schemas_are_valid_schemas() -> None:
    jsonschema.Draft202012Validator.check_schema(FLOW_SCHEMA)
    jsonschema.Draft202012Validator.check_schema(TRANSCRIPT_SCHEMA)


@pytest.mark.parametrize("path", sorted(FLOWS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_flows_match_the_schema(path: Path) -> None:
    jsonschema.validate(yaml(path), FLOW_SCHEMA)


@pytest.mark.parametrize("path", sorted((FLOWS / "tests").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_transcripts_match_the_schema(path: Path) -> None:
    jsonschema.validate(yaml(path), TRANSCRIPT_SCHEMA)


@pytest.mark.parametrize("name", ["unknown_key", "missing_title", "wrong_type", "unknown_type",
                                  "ask_without_type", "steps_not_list", "empty_text"])
def test_schema_rejects_broken_flows(name: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml(BROKEN / f"{name}.yaml"), FLOW_SCHEMA)
