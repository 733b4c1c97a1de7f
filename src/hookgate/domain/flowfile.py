"""Reading flows: a flow file or object to ``FlowSpec``s; errors name flow, field and line."""

from __future__ import annotations

import difflib
import re
from typing import Any

import msgspec
import yaml

from hookgate.domain.destinations import _Spec
from hookgate.domain.flows import MAX_WORKERS, FlowSpec
from hookgate.domain.units import dec_hook
from hookgate.errors import ConfigError

# libyaml's parser when PyYAML was built with it: a 100,000-flow file loads in seconds.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _FlowFile(_Spec):
    flows: list[FlowSpec]


def spec_from_object(obj: Any, *, where: str = "flow") -> FlowSpec:
    """Validate a decoded JSON/YAML object as one flow spec; ConfigError names field and problem."""
    try:
        spec = msgspec.convert(obj, FlowSpec, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        name = obj.get("name") if isinstance(obj, dict) else None
        label = f"flow {name!r}" if isinstance(name, str) else where
        raise ConfigError(f"{label}: {_field_message(str(exc))}") from None
    if over := _over_limit(spec):
        raise ConfigError(f"flow {spec.name!r}: field {over[0]}: {over[1]}")
    return spec


def parse_flow_file(text: str, *, source: str = "<flows>") -> list[FlowSpec]:
    """Parse a flow file (``flows: [...]``); every error names the flow, field and line."""
    try:
        data = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict) or "flows" not in data:
        raise ConfigError(f"{source}: expected a mapping with a `flows:` list at the top")
    try:
        specs = msgspec.convert(data, _FlowFile, dec_hook=dec_hook).flows
    except msgspec.ValidationError as exc:
        # Only now, on the error path, is the file composed again to find the line.
        node = yaml.compose(text, Loader=_LOADER)
        raise ConfigError(_located(source, data, node, str(exc))) from None
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        if over := _over_limit(spec):
            node = yaml.compose(text, Loader=_LOADER)
            line = _line_of(node, [("flows", None), ("", index), (over[0], None)])
            raise ConfigError(f"{source}:{line}: flow {spec.name!r}: field {over[0]}: {over[1]}")
        if spec.name in seen:
            node = yaml.compose(text, Loader=_LOADER)
            line = _line_of(node, [("flows", None), ("", index)])
            raise ConfigError(f"{source}:{line}: flow {spec.name!r} is declared twice")
        seen.add(spec.name)
    return specs


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message with lines and columns, without its ``in "<unicode string>"``."""
    pieces = []
    for kind in ("context", "problem"):
        text, mark = getattr(exc, kind, None), getattr(exc, f"{kind}_mark", None)
        if text and mark:
            pieces.append(f"{text} (line {mark.line + 1}, column {mark.column + 1})")
        elif text:
            pieces.append(text)
    return ", ".join(pieces) or str(exc)


def _over_limit(spec: FlowSpec) -> tuple[str, str] | None:
    """The field over ``MAX_WORKERS`` and the problem, if any."""
    for field in ("max_workers", "replicas"):
        value = getattr(spec, field)
        if value > MAX_WORKERS:
            return field, f"at most {MAX_WORKERS} workers per flow, got {value}"
    return None


_PATH_TOKEN = re.compile(r"\.([A-Za-z0-9_]+)|\[(\d+)\]")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")


def _split(message: str, root: type = FlowSpec) -> tuple[str, list[tuple[str, int | None]]]:
    """msgspec's ``problem - at `$.a[0].b``` as the problem and the path tokens; an unknown
    field gets the nearest known one suggested, a bad enum value the list of valid ones."""
    problem, sep, path = message.rpartition(" - at `")
    if not sep:
        problem, path = message, ""
    tokens = [(k, int(i) if i else None) for k, i in _PATH_TOKEN.findall(path)]
    unknown = _UNKNOWN.search(problem)
    if unknown:
        tokens.append((unknown.group(1), None))
        known = _field_names(_type_at(msgspec.inspect.type_info(root), tokens[:-1]))
        nearest = difflib.get_close_matches(unknown.group(1), known, n=1, cutoff=0.6)
        if nearest:
            problem += f"; did you mean `{nearest[0]}`?"
    if tokens and tokens[-1][0] == "concurrency" and problem.startswith("Invalid enum value"):
        # msgspec names only the string half of `int | "auto"`.
        problem = "Expected `int` >= 1 or 'auto', got " + problem.removeprefix(
            "Invalid enum value "
        )
    elif problem.startswith("Invalid enum value"):
        valid = _enum_values(_type_at(msgspec.inspect.type_info(root), tokens))
        if valid:
            problem += f"; expected one of {', '.join(repr(v) for v in valid)}"
    return problem, tokens


def _options(info: Any) -> list[Any]:
    """A type and, for a union (``X | None``), each of its members."""
    return list(info.types) if isinstance(info, msgspec.inspect.UnionType) else [info]


def _type_at(info: Any, tokens: list[tuple[str, int | None]]) -> Any:
    """The msgspec type info at a path of struct fields and list indexes (None if lost)."""
    for key, index in tokens:
        found = None
        for option in _options(info):
            if index is not None and isinstance(option, msgspec.inspect.ListType):
                found = option.item_type
            elif isinstance(option, msgspec.inspect.StructType):
                found = next((f.type for f in option.fields if f.encode_name == key), None)
            if found is not None:
                break
        if found is None:
            return None
        info = found
    return info


def _field_names(info: Any) -> list[str]:
    return [
        f.encode_name
        for option in _options(info)
        if isinstance(option, msgspec.inspect.StructType)
        for f in option.fields
    ]


def _enum_values(info: Any) -> list[Any]:
    values: list[Any] = []
    for option in _options(info):
        if isinstance(option, msgspec.inspect.EnumType):
            values += [member.value for member in option.cls]
        elif isinstance(option, msgspec.inspect.LiteralType):
            values += list(option.values)
    return values


def _dotted(tokens: list[tuple[str, int | None]]) -> str:
    return "".join(f"[{i}]" if i is not None else f".{k}" for k, i in tokens).lstrip(".")


def _field_message(message: str) -> str:
    """Turn msgspec's ``problem - at `$.a.b``` into ``field a.b: problem``."""
    problem, tokens = _split(message)
    return f"field {_dotted(tokens)}: {problem}" if tokens else problem


def _located(source: str, data: Any, node: Any, message: str) -> str:
    problem, tokens = _split(message, _FlowFile)
    line = _line_of(node, tokens)
    where = f"{source}:{line}" if line else source
    if len(tokens) >= 2 and tokens[0][0] == "flows" and tokens[1][1] is not None:
        index = tokens[1][1]
        entry = data["flows"][index] if index < len(data["flows"]) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        where += f": flow {name!r}" if isinstance(name, str) else f": flow #{index + 1}"
        tokens = tokens[2:]
    return f"{where}: field {_dotted(tokens)}: {problem}" if tokens else f"{where}: {problem}"


def _line_of(node: Any, tokens: list[tuple[str, int | None]]) -> int | None:
    """The 1-based line of the YAML node at a msgspec path, as deep as the path resolves."""
    line = node.start_mark.line + 1 if node is not None else None
    for key, index in tokens:
        if node is None:
            break
        if index is not None and isinstance(node, yaml.SequenceNode):
            node = node.value[index] if index < len(node.value) else None
        elif key and isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), None)
        else:
            node = None
        if node is not None:
            line = node.start_mark.line + 1
    return line
