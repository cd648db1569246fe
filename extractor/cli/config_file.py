"""`--config FILE.toml`: one job file, one table per command, whose keys set the defaults of its flags.

```toml
[label]
teacher = "model.onnx"
images = "faces/"

[train]
epochs = 4
batch-size = 64
teacher = ["3f2a9c", "runs/student:2"]   # a repeatable flag takes a list
split-by = ["people.csv", "person"]      # a flag of two values takes both

[store.stats]                             # a command of a group
store = "labels.db"
```

Keys are the long flag names without the dashes (``--batch-size`` -> ``batch-size``; a positional argument
by its name, ``run-dir``). Values are TOML's own types, and paths are relative to the directory the command
runs in, as on the command line. A flag given on the command line wins over the file. The file becomes the
command's ``default_map``, so every command takes it without a line of its own.
"""
from __future__ import annotations

import difflib
import tomllib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from extractor.errors import ConfigError, InputNotFound

CONFIG_FLAG = "--config"


def split_config_flag(argv: Sequence[str]) -> tuple[Path | None, list[str]]:
    """(the ``--config FILE`` or ``--config=FILE`` in ``argv``, the other arguments).

    Arguments after a bare ``--`` are left alone: there ``--config`` is a value, not a flag.
    """
    rest: list[str] = []
    found: Path | None = None
    args = list(argv)
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest += args[index:]
            break
        if arg == CONFIG_FLAG or arg.startswith(CONFIG_FLAG + "="):
            if found is not None:
                raise ConfigError(f"{CONFIG_FLAG} is given twice; give one job file")
            value = arg.partition("=")[2] if "=" in arg else (args[index + 1] if index + 1 < len(args) else "")
            if not value or value.startswith("-"):
                raise ConfigError(f"{CONFIG_FLAG} needs a FILE.toml")
            found = Path(value)
            index += 1 if "=" in arg else 2
            continue
        rest.append(arg)
        index += 1
    return found, rest


def load_default_map(path: Path, root: Any) -> dict[str, Any]:
    """Reads ``path`` and checks it against the command tree ``root`` (a click group, as typer builds it).

    Returns:
        The ``default_map`` for ``root``: ``{command: {parameter name: value}}``, with groups nested
        (``{"store": {"stats": {...}}}``).

    Raises:
        InputNotFound: when the file is not there.
        ConfigError: on TOML that does not parse, a key outside a table, an unknown table or key (naming
            the closest valid one), or a value of the wrong type (naming the key and the type expected).
    """
    if not path.is_file():
        raise InputNotFound(f"{CONFIG_FLAG} {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{CONFIG_FLAG} {path} is not valid TOML: {exc}") from None
    commands, groups = _commands(root)
    default_map: dict[str, Any] = {}
    for name, values in _tables(data, groups):
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: {name!r} is outside any table; put it under one of "
                              f"{', '.join(f'[{command}]' for command in commands)}")
        if name not in commands:
            raise ConfigError(f"{path}: unknown table [{name}]{_closest(name, commands)}")
        target = default_map
        *words, last = name.split()
        for word in words:
            target = target.setdefault(word, {})
        target[last] = _table_defaults(path, name, values, commands[name])
    return default_map


def _tables(data: dict[str, Any], groups: set[str], prefix: str = "") -> list[tuple[str, Any]]:
    """(command words, table) of each table: ``[store.stats]`` is the command "store stats"."""
    found = []
    for name, values in data.items():
        words = f"{prefix}{name}"
        if words in groups and isinstance(values, dict):
            found += _tables(values, groups, words + " ")
        else:
            found.append((words, values))
    return found


def _commands(root: Any) -> tuple[dict[str, Any], set[str]]:
    """(every runnable command under ``root`` by its words, e.g. "train", "store stats"; the groups' words)."""
    found: dict[str, Any] = {}
    groups: set[str] = set()

    def walk(group: Any, prefix: str) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                groups.add(f"{prefix}{name}")
                walk(command, f"{prefix}{name} ")
            else:
                found[f"{prefix}{name}"] = command

    walk(root, "")
    return found, groups


def _key(param: Any) -> str:
    """A parameter's key in the file: its first long flag without the dashes, or an argument's name."""
    longs = [opt for opt in param.opts if opt.startswith("--")]
    return longs[0][2:] if longs else param.name.replace("_", "-")


def _table_defaults(path: Path, table: str, values: dict[str, Any], command: Any) -> dict[str, Any]:
    params = {_key(param): param for param in command.params if param.name}
    defaults = {}
    for key, value in values.items():
        if key not in params:
            raise ConfigError(f"{path}: [{table}] has no key {key!r}{_closest(key, params)}")
        param = params[key]
        expected = _annotation(param)
        if not _matches(value, expected, param):
            raise ConfigError(f"{path}: [{table}] {key} must be {_describe(expected, param)}, got "
                              f"{type(value).__name__} {value!r}")
        defaults[param.name] = value
    return defaults


def _closest(name: str, valid: Sequence[str] | dict) -> str:
    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.0)
    return f"; did you mean {match[0]!r}?" if match else ""


def _annotation(param: Any) -> Any:
    """The Python type typer built the parameter from (``Optional`` already removed)."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        return descriptor.annotation
    # A click-based typer: read the click type (INT, FLOAT, BOOL, STRING, Path, Tuple).
    name = getattr(param.type, "name", "text")
    scalar = {"integer": int, "float": float, "boolean": bool}.get(name, str)
    return list[scalar] if getattr(param, "multiple", False) or param.nargs == -1 else scalar


def _matches(value: Any, expected: Any, param: Any) -> bool:
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin is list:
        return isinstance(value, list) and all(_matches(item, args[0] if args else str, param) for item in value)
    if origin is tuple:
        return (isinstance(value, list) and len(value) == len(args)
                and all(_matches(item, arg, param) for item, arg in zip(value, args, strict=True)))
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)  # str, Path, choices: given as text, checked by the command itself


def _describe(expected: Any, param: Any) -> str:
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin is list:
        return f"a list of {_plural(args[0] if args else str)}"
    if origin is tuple:
        return f"a list of {len(args)} values ({', '.join(_singular(arg) for arg in args)})"
    return _singular(expected)


def _singular(kind: Any) -> str:
    return {bool: "a boolean (true or false)", int: "an integer", float: "a number",
            Path: "a path (a string)"}.get(kind, "a string")


def _plural(kind: Any) -> str:
    return {bool: "booleans", int: "integers", float: "numbers", Path: "paths (strings)"}.get(kind, "strings")
