"""Defaults live in the schema only: the dataclasses mirror it key for key and declare no defaults; each
command's settings are real config paths."""

import dataclasses
import typing

import pytest
import yaml

from meddiff.config import COMMAND_SECTIONS, SCHEMA_PATH, Config, Sections, Variant, section_values, validate


def _walk(tp, schema, where):
    """(where, problem) for every mismatch between dataclass ``tp`` and its schema ``schema`` (an object)."""
    problems = []
    props = schema.get("properties", {})
    fields = {f.name: f for f in dataclasses.fields(tp)}
    for name in set(props) ^ set(fields):
        problems.append((f"{where}.{name}", "only in the schema" if name in props else "only in the dataclass"))
    hints = typing.get_type_hints(tp)
    for name, field in fields.items():
        if field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING:
            problems.append((f"{where}.{name}", "dataclass default (defaults belong in the schema)"))
        sub = props.get(name, {})
        inner = hints[name]
        if typing.get_origin(inner) is list and dataclasses.is_dataclass(typing.get_args(inner)[0]):
            inner, sub = typing.get_args(inner)[0], sub.get("items", {})
        if dataclasses.is_dataclass(inner) and sub.get("type") == "object":
            problems += _walk(inner, sub, f"{where}.{name}")
    return problems


def test_dataclasses_mirror_the_schema_without_defaults():
    schema = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert _walk(Config, schema, "config") == []


def test_every_declared_setting_exists_and_types(tmp_path):
    raw = validate(yaml.safe_load(open("config/demo.yaml", encoding="utf-8")))
    for command in COMMAND_SECTIONS:
        values = section_values(raw, command)
        sections = Sections(command, values)  # builds every declared path with its type
        for path in COMMAND_SECTIONS[command]:
            sections[path]
    trained = Sections("train.baseline", section_values(raw, "train.baseline"))
    assert isinstance(trained["variant"], Variant) and trained["variant"].name == "baseline"
    with pytest.raises(KeyError, match="does not declare"):
        Sections("masks", section_values(raw, "masks"))["seed"]


def test_train_jobs_read_their_own_run_length_only():
    raw = validate(yaml.safe_load(open("config/demo.yaml", encoding="utf-8")))
    longer = {**raw, "training": {**raw["training"], "foundation_steps": raw["training"]["steps"] * 3}}
    variant = raw["variants"][0]["name"]
    assert section_values(raw, f"train.{variant}") == section_values(longer, f"train.{variant}")
    foundation = Sections("train.foundation", section_values(longer, "train.foundation"))["training"]
    assert foundation.steps == raw["training"]["steps"] * 3 and foundation.foundation_steps is None
    with pytest.raises(Exception, match="needs training.foundation_steps"):
        section_values({**raw, "training": {**raw["training"], "foundation_steps": None}}, "train.foundation")
