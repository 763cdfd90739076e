"""The JSON Schemas: shipped as package data, coherent, in line with the model and the README.

Running this file as a script prints the README's field tables, rendered from the schemas:
``.venv/bin/python -m tests.test_schema_docs``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from batchkling import model
from batchkling.manifest.schemas import load_schema, schema_names, schema_registry, validator_for

__all__ = ["field_tables"]

ROOT = Path(__file__).resolve().parents[2]


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return "see shot fields"
    if "anyOf" in prop:  # a string, or a mapping such as ``{after: ID}``
        return " or ".join("mapping" if "$ref" in alt else _type(alt) for alt in prop["anyOf"])
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return " or ".join(f"`{v}`" for v in prop["enum"])
    kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
    items = "shots" if "$ref" in prop.get("items", {}) else "strings"
    names = {"array": f"list of {items}", "object": "mapping", "number": "number"}
    text = " or ".join("numeric string" if k == "string" and len(kinds) > 1 else names.get(k, k)
                       for k in kinds)  # fmt: skip
    if prop.get("type") == "object" and "properties" in prop:
        text = "mapping of shot fields"
    if "minimum" in prop and "maximum" in prop:
        text += f", {prop['minimum']} to {prop['maximum']}"
    elif "minimum" in prop:
        text += f", at least {prop['minimum']}"
    return text


def _default(name: str, prop: dict[str, Any], required: list[str]) -> str:
    if name in required:
        return "required"
    if "default" in prop and prop["default"] != []:
        value = prop["default"]
        return f"`{value if isinstance(value, str) else json.dumps(value)}`"
    return "none"


def _table(schema: dict[str, Any], head: str) -> list[str]:
    lines = [f"| {head} | type | default | description |", "|---|---|---|---|"]
    required = schema.get("required", [])
    for name, prop in schema["properties"].items():
        description = prop["description"].replace("|", "\\|")
        lines.append(
            f"| `{name}` | {_type(prop)} | {_default(name, prop, required)} | {description} |"
        )
    return lines


def field_tables() -> tuple[str, str]:
    """The README's two tables: the top-level keys of a manifest, and the fields of a shot."""
    top = _table(load_schema("manifest.schema.json"), "key")
    shot = _table(load_schema("shot.schema.json"), "field")
    return "\n".join(top) + "\n", "\n".join(shot) + "\n"


def test_schemas_ship_as_package_data() -> None:
    """Both schemas are found through importlib.resources, as an installed package finds them."""
    names = {entry.name for entry in resources.files("batchkling.schemas").iterdir()}
    assert {"manifest.schema.json", "shot.schema.json"} <= names
    assert {"manifest.schema.json", "shot.schema.json"} <= set(schema_names())
    assert load_schema("shot.schema.json") is not load_schema("shot.schema.json")  # fresh copies


def test_schemas_are_valid_2020_12() -> None:
    """Each schema is itself valid against the 2020-12 metaschema."""
    for name in ("manifest.schema.json", "shot.schema.json"):
        schema = load_schema(name)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)
        assert schema["$id"] in {str(uri) for uri in schema_registry()}


def test_whole_manifest_schema_validates_the_examples() -> None:
    """The manifest schema as a whole ($refs resolved) accepts the examples and refuses a typo."""
    validator = validator_for("manifest.schema.json")
    for name in ("quickstart.yaml", "storyboard.yaml"):
        document = yaml.safe_load((ROOT / "manifests" / name).read_text())
        assert list(validator.iter_errors(document)) == []
        document["shots"][0]["durration"] = 5
        document["defaults"] = {"model_mode": "ultra"}
        paths = sorted(list(e.absolute_path) for e in validator.iter_errors(document))
        assert paths == [["defaults", "model_mode"], ["shots", 0]]


def test_every_field_is_described() -> None:
    """Every property of both schemas has a description: the README's tables are built of them."""
    for name in ("manifest.schema.json", "shot.schema.json"):
        schema = load_schema(name)
        assert schema["description"]
        assert all(prop.get("description") for prop in schema["properties"].values())


def test_defaults_cover_every_shot_field_but_id() -> None:
    """`defaults` lists exactly the shot fields except id, each referring to the shot's rule."""
    shot = load_schema("shot.schema.json")["properties"]
    defaults = load_schema("manifest.schema.json")["properties"]["defaults"]["properties"]
    assert list(defaults) == [name for name in shot if name != "id"]
    assert all(d == {"$ref": f"shot.schema.json#/properties/{n}"} for n, d in defaults.items())


def test_schema_agrees_with_the_model() -> None:
    """The schema's defaults and bounds are the model's constants."""
    shot = load_schema("shot.schema.json")["properties"]
    assert shot["duration"]["default"] == model.DEFAULT_DURATION
    assert shot["multi_shot"]["default"] is model.DEFAULT_MULTI_SHOT
    assert shot["model_mode"]["default"] == model.DEFAULT_MODE
    assert shot["model_mode"]["enum"] == list(model.RATES)
    assert (shot["takes"]["default"], shot["takes"]["maximum"]) == (
        model.DEFAULT_TAKES,
        model.MAX_TAKES,
    )
    derived = {"line", "image_sha256", "tail_sha256"}  # where a shot was read, what its files hold
    assert set(shot) == {f for f in model.Shot.__dataclass_fields__ if f not in derived}


def test_readme_field_tables_match_the_schema() -> None:
    """The README's field tables are the ones rendered from the schemas, word for word."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for table in field_tables():
        assert table in readme, "regenerate with: .venv/bin/python -m tests.test_schema_docs"


if __name__ == "__main__":
    print(*field_tables(), sep="\n", end="")
