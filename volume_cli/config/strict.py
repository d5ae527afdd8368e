"""Shared pieces of the strict config models and their located errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from volume_cli.config.located_yaml import LocatedDocument


class StrictModel(BaseModel):
    """Config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


_TYPE_WORDS = {
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "an integer",
    "int_parsing": "an integer",
}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _allowed_keys(model: type[BaseModel] | None, loc: Sequence[str | int]) -> list[str] | None:
    """Walk ``model`` along pydantic's raw ``loc`` (minus the last part) to list the allowed keys there."""
    if model is None:
        return None
    candidates: list[type[BaseModel]] = [model]
    for part in loc[:-1]:
        inner = [
            member
            for candidate in candidates
            if isinstance(part, str) and part in candidate.model_fields
            for member in _models_in(candidate.model_fields[part].annotation)
        ]
        if inner:
            candidates = inner
            continue
        # A list index or a mapping key (a group name) keeps the item models;
        # a union tag ("local") picks the member whose source it is.
        tagged = [candidate for candidate in candidates if _source_tag(candidate) == part]
        candidates = tagged or candidates
    return sorted(candidates[0].model_fields) if len(candidates) == 1 else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in getattr(annotation, "__args__", ()) or () for model in _models_in(arg)]


def _source_tag(model: type[BaseModel]) -> object:
    field = model.model_fields.get("source")
    return field.default if field is not None else None


def validation_problems(
    document: LocatedDocument,
    error: ValidationError,
    *,
    model: type[BaseModel] | None = None,
    prefix: Sequence[str | int] = (),
) -> list[str]:
    """Turn a pydantic error into one located, human line per problem."""
    problems: list[str] = []
    # A misspelt key shows up as both "unknown key" and "required key is
    # missing"; the unknown key is the cause, so it comes first.
    errors = sorted(error.errors(include_url=False), key=lambda item: item["type"] == "missing")
    for item in errors:
        loc = [*prefix, *_without_union_tags(item["loc"])]
        kind = item["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, item["loc"])
            text = f"unknown key {str(loc[-1])!r}"
            if allowed:
                text += f" (allowed: {', '.join(allowed)})"
        elif kind == "missing":
            text = "required key is missing"
        elif kind in _TYPE_WORDS:
            text = f"must be {_TYPE_WORDS[kind]}, got {_describe(item.get('input'))}"
        elif kind in {"value_error", "assertion_error"}:
            text = str(item["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        elif kind == "union_tag_invalid":
            text = str(item["msg"])
        else:
            text = str(item["msg"])
        problems.append(document.problem(loc, text))
    return problems


def _without_union_tags(loc: Sequence[str | int]) -> list[str | int]:
    # pydantic inserts the discriminator value ("huggingface") after a list
    # index for members of a tagged union; users never wrote that key.
    kept: list[str | int] = []
    for index, part in enumerate(loc):
        after_index = index > 0 and isinstance(loc[index - 1], int)
        if isinstance(part, str) and (part.startswith("function-") or (after_index and part in _UNION_TAGS)):
            continue
        kept.append(part)
    return kept


_UNION_TAGS = {"huggingface", "modelscope", "url", "local"}
