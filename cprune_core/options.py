"""Settings classes, declared once: each field's default, help, valid values and command-line flag.

A settings class (``FinetuneConfig``, ``ablation.AnalysisConfig``, ``atlas.AtlasSettings``) is a dataclass
deriving from ``Settings`` whose every field is made by ``option(default, help, group, ...)``. From that one
declaration: ``Settings.validate`` checks every field (each item of a tuple, None only where the type allows
it, booleans), then the class's ``check_together`` hook (the rules between fields); the command line derives
its options (``cli.options.add_settings_options``) and the app its widgets (``ui.forms``), both with the
field's help. ``app_range`` is the one place the app's limits come from. Adding a field is one ``option``
line: it reaches the command line, the help, the validation and (with one widget call) the app.

Example
-------
>>> @dataclass(frozen=True)
... class Demo(Settings):
...     seeds: int = option(4, "Seeds of the random criterion.", "demo", range=Range(2, 1000, integer=True),
...                         app_range=Range(2, 20))
>>> Demo(seeds=1).validate()
Traceback (most recent call last):
cprune_core.errors.ConfigError: seeds must be in [2, 1000] (a whole number), got 1.
>>> app_range(Demo, "seeds")
Range(low=2, high=20, low_open=False, high_open=False, integer=True)
"""
from __future__ import annotations

import functools
import math
import types
import typing
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Self

from .errors import ConfigError
from .ranges import Range, choose
from .settings import setting

__all__ = ["Option", "option", "Shape", "Settings", "app_range"]


@dataclass(frozen=True)
class Option:
    """What the command line, the app and the validation know about one field (of a tuple or list field:
    about each item, which must also have at least one)."""

    help: str  # one text for the command line's --help and the app's widget
    group: str  # the command line's option group: model, data, method, training, analysis or atlas
    choices: Collection[str] | None = None  # a registry's dict is read live: a backbone registered later is valid
    range: Range | None = None  # of a number (every number field has one)
    flag: str | None = None  # the command line's flag when it is not --<field-name>
    label: str | None = None  # one value's name in messages when it is not the field's ("keep ratio")
    path: bool = False  # a file or folder the user names
    none: str | None = None  # what None means, in words ("the backbone's head layer"), where the type allows it
    cli_none: str | None = None  # the word that chooses None on the command line ("all")
    app_range: Range | None = None  # where the app accepts less than ``range`` (a visitor on a shared server)
    note: str | None = None  # a sentence added to a refusal: why the valid values are what they are


def option(default: Any, help: str, group: str, **kwargs: Any) -> Any:
    """A dataclass field with ``default`` that carries its ``Option(help, group, **kwargs)``."""
    return field(default=default, metadata={"option": Option(help, group, **kwargs)})


@dataclass(frozen=True)
class Shape:
    """A field's type, as the checks and the command line need it: ``kind`` bool, int, float, str, tuple or
    list; ``item`` the type of a tuple's or list's items; ``nullable`` when None is a valid value."""

    kind: type
    item: type | None
    nullable: bool


def _shape(hint: Any) -> Shape:
    """Shape(int, None, True) for ``int | None``, Shape(tuple, float, False) for ``tuple[float, ...]``,
    Shape(str, None, False) for ``Literal["a", "b"]``."""
    nullable = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        nullable = type(None) in typing.get_args(hint)
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) is typing.Literal:
        return Shape(type(typing.get_args(hint)[0]), None, nullable)
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        return Shape(origin, typing.get_args(hint)[0], nullable)
    return Shape(hint, None, nullable)


def _intersection(first: Range, second: Range) -> Range:
    """The values both ranges hold (an end shared by both is open when either is)."""
    low = max(first.low, second.low)
    high = min(first.high, second.high)
    low_open = (first.low == low and first.low_open) or (second.low == low and second.low_open)
    high_open = (first.high == high and first.high_open) or (second.high == high and second.high_open)
    return Range(low, high, low_open, high_open, first.integer or second.integer)


def app_range(settings_class: type[Settings], name: str) -> Range | None:
    """The values the app accepts for field ``name``: its range, narrowed by its ``app_range``, whose top the
    server's ``CPRUNE_APP_LIMITS_PERCENT`` lowers to that share of it (rounded down for a count, never below its
    bottom; read at every call). The one place the app's limits come from: its forms and ``validate(app=True)``."""
    chosen = settings_class.options()[name]
    if chosen.range is None or chosen.app_range is None:
        return chosen.range
    narrowed = _intersection(chosen.range, chosen.app_range)
    top = narrowed.high * setting("CPRUNE_APP_LIMITS_PERCENT") / 100
    top = max(math.floor(top) if narrowed.integer else top, narrowed.low)
    return narrowed if top >= narrowed.high else _intersection(narrowed, Range(narrowed.low, top))


class Settings:
    """The base of a settings dataclass whose fields are all made by ``option``: their metadata
    (``options``, ``shapes``), one check of every field (``validate``) and the dict form.

    A class adds its rules between fields by overriding ``check_together``.
    """

    @classmethod
    def options(cls) -> dict[str, Option]:
        """Each field's Option, in field order."""
        return {f.name: f.metadata["option"] for f in fields(cls)}

    @classmethod
    def shapes(cls) -> dict[str, Shape]:
        """Each field's Shape, in field order (from its type annotation)."""
        return _shapes(cls)

    def validate(self, *, app: bool = False) -> Self:
        """``self`` when every value is possible, else ConfigError naming the first that is not: each field
        against its Option (choices, range, at least one item, names not empty, true or false), then
        ``check_together``. ``app``: numbers also within the app's limits (``app_range``), refused in a
        sentence that says the command line accepts more."""
        shapes = self.shapes()
        for name, chosen in self.options().items():
            value = getattr(self, name)
            try:
                _check_value(name, chosen, shapes[name], value, chosen.range)
            except ConfigError as refusal:
                raise ConfigError(f"{refusal} {chosen.note}" if chosen.note else str(refusal)) from None
            narrowed = app_range(type(self), name) if app else chosen.range
            if narrowed != chosen.range:
                try:
                    _check_value(name, chosen, shapes[name], value, narrowed)
                except ConfigError as refusal:
                    raise ConfigError(f"{refusal} That is this app's limit: the command line accepts "
                                      f"{chosen.range}.") from None
        self.check_together()
        return self

    def check_together(self) -> None:
        """ConfigError for a combination of values that cannot be used (each value is already valid)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Self:
        """From a dict (a stored or JSON form: lists become tuples where the field is a tuple); unknown keys
        raise ConfigError (a typo would otherwise be ignored)."""
        unknown = sorted(set(values) - set(cls.options()))
        if unknown:
            raise ConfigError(f"Unknown {cls.__name__} field(s): {', '.join(unknown)}.")
        shapes = cls.shapes()
        return cls(**{name: tuple(value) if shapes[name].kind is tuple and isinstance(value, list) else value
                      for name, value in values.items()})


@functools.cache
def _shapes(settings_class: type) -> dict[str, Shape]:
    hints = typing.get_type_hints(settings_class)
    return {f.name: _shape(hints[f.name]) for f in fields(settings_class)}


def _check_value(name: str, chosen: Option, shape: Shape, value: Any, valid: Range | None) -> None:
    """ConfigError unless ``value`` fits the field: None where nullable, a non-empty tuple or list of valid
    items, or one valid item."""
    label = chosen.label or name
    if value is None:
        if not shape.nullable:
            raise ConfigError(f"{label} must be given, got None.")
        return
    if shape.kind in (tuple, list):
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{name} must be a list, got {value!r}.")
        if not value:
            raise ConfigError(f"Choose at least one {label}.")
        for item in value:
            _check_item(label, chosen, shape.item, item, valid, None)
        return
    _check_item(label, chosen, shape.kind, value, valid, chosen.none if shape.nullable else None)


def _check_item(label: str, chosen: Option, kind: type, value: Any, valid: Range | None, none: str | None) -> None:
    """ConfigError unless ``value`` is one of the choices, a number in ``valid``, true or false, or a name
    (a path) that is not empty. ``none``: what None would mean, for the sentence."""
    if chosen.choices is not None:
        choose(value, chosen.choices, label)
    elif kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{label} must be true or false, got {value!r}.")
    elif kind in (int, float):
        if valid is None:
            raise TypeError(f"the number field {label} declares no range")
        valid.check(value, label)
    elif not isinstance(value, str) or not value.strip():
        what = "a path" if chosen.path else "a name"
        raise ConfigError(f"{label} must be {what}" + (f", or None for {none}" if none else "") + f"; got {value!r}.")
