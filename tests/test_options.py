"""One way to declare settings (cprune_core/options.py): every settings class's fields against the command
line's options, the app's widgets and the validation derived from them."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import pytest

from cprune_core import registry
from cprune_core.ablation import AnalysisConfig
from cprune_core.atlas import AtlasResult, AtlasSettings
from cprune_core.cli import build_parser
from cprune_core.cli.options import add_settings_options, flag_of, settings_from_args, shown_value
from cprune_core.errors import ConfigError
from cprune_core.experiment.importance_report import QUICK_ANALYSIS
from cprune_core.options import Settings, app_range, option
from cprune_core.ranges import Range
from cprune_core.schema import FinetuneConfig
from ui import forms

# Each settings class, the command that takes it and that command's --quick preset (None: no preset).
COMMANDS = {FinetuneConfig: (["finetune"], None), AnalysisConfig: (["experiment", "importance"], QUICK_ANALYSIS),
            AtlasSettings: (["experiment", "atlas"], AtlasSettings.quick())}
SETTINGS_CLASSES = list(COMMANDS)


def command_parser(names: list[str]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in names:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def action_of(parser: argparse.ArgumentParser, dest: str) -> argparse.Action:
    [action] = [a for a in parser._actions if a.dest == dest]
    return action


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES)
def test_every_field_declares_help_a_group_and_a_range_for_a_number(settings_class):
    for name, chosen in settings_class.options().items():
        shape = settings_class.shapes()[name]
        assert chosen.help and chosen.group, name
        if (shape.item or shape.kind) in (int, float):
            assert chosen.range is not None, name
        if shape.nullable and getattr(settings_class(), name) is None:
            assert chosen.none or chosen.path, f"{name}: what None means is not said"


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES)
def test_every_field_is_an_option_of_its_command_with_the_fields_flag_help_range_and_choices(settings_class):
    names, _ = COMMANDS[settings_class]
    parser = command_parser(names)
    for name, chosen in settings_class.options().items():
        action = action_of(parser, name)
        assert action.option_strings == [flag_of(settings_class, name)]
        help_text = action.help.replace("%%", "%")
        assert help_text.startswith(chosen.help), name
        assert (f"Valid: {chosen.range}." in help_text) == (chosen.range is not None), name
        if chosen.choices is not None:
            listed = action.choices if action.choices is not None else help_text.split("Choices: ")[1].split(".")[0]
            assert set(chosen.choices) <= set(listed if action.choices is not None else listed.split(", ")), name


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES)
def test_no_option_given_is_the_fields_defaults_and_quick_is_its_preset(settings_class):
    names, quick = COMMANDS[settings_class]
    parser = command_parser(names)
    defaults = settings_class()
    if quick is None:  # each option's default is the field's
        for name in settings_class.options():
            assert action_of(parser, name).default == getattr(defaults, name), name
    assert settings_from_args(parser.parse_args([]), settings_class) == defaults
    if quick is not None:
        args = parser.parse_args(["--quick"])
        assert settings_from_args(args, settings_class, quick) == quick
        for name in settings_class.options():  # the help names the default, and the preset where it differs
            help_text = action_of(parser, name).help
            assert "Default: " in help_text and (("(--quick: " in help_text)
                                                 == (getattr(quick, name) != getattr(defaults, name))), name


@pytest.mark.parametrize("settings_class", [AnalysisConfig, AtlasSettings])
def test_an_option_given_beats_the_quick_preset_and_reads_back_as_the_field(settings_class):
    names, quick = COMMANDS[settings_class]
    parser = command_parser(names)
    full = settings_class()
    for name, chosen in settings_class.options().items():
        value = getattr(full, name)
        if value is None:
            if chosen.cli_none is None:
                continue  # None cannot be written: the option is left out
            written = chosen.cli_none
        else:
            written = shown_value(value)
        args = parser.parse_args(["--quick", flag_of(settings_class, name), written])
        assert getattr(settings_from_args(args, settings_class, quick), name) == value, name


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES)
def test_a_number_just_outside_its_range_is_refused_by_name(settings_class):
    names, _ = COMMANDS[settings_class]
    parser = command_parser(names)
    for name, chosen in settings_class.options().items():
        if chosen.range is None:
            continue
        valid = chosen.range
        outside = valid.high if valid.high_open else valid.high + 1
        written = shown_value(int(outside) if valid.integer else float(outside))
        args = parser.parse_args([flag_of(settings_class, name), written])
        with pytest.raises(ConfigError, match=f"^{chosen.label or name} must be in "):
            settings_from_args(args, settings_class)


def test_the_atlas_options_were_drifting_and_now_match_its_settings():
    """The command line once typed --sample, --val-images and --seeds by hand (no ranges, seeds valid from 1
    while the atlas needs 2) and left out the keep ratios, resamples, permutations and criteria."""
    parser = command_parser(["experiment", "atlas"])
    assert "Valid: [2, 1000]" in action_of(parser, "seeds").help
    for flag in ("--keep-ratios", "--resamples", "--permutations", "--criteria", "--quick-layers"):
        assert flag in parser._option_string_actions
    args = parser.parse_args(["--quick", "--layers", "head.1", "--tau", "0.3"])
    from cprune_core.cli.experiment_atlas import _settings

    assert _settings(args) == AtlasSettings.quick(layers=("head.1",), quick_layers=0, tau=0.3)


# --- the app's widgets ---------------------------------------------------------------------------------------

# The settings the app's forms start from (the atlas form starts from --quick's: the full atlas, 100 random kept sets
# per keep ratio, is the command line's work and lies beyond the app's limits on purpose).
@pytest.mark.parametrize("settings", [FinetuneConfig(), AnalysisConfig(), AtlasSettings.quick()],
                         ids=lambda s: type(s).__name__)
def test_a_number_widget_takes_the_fields_app_limits_default_and_help(settings):
    settings_class = type(settings)
    for name, chosen in settings_class.options().items():
        valid, shape = app_range(settings_class, name), settings_class.shapes()[name]
        if valid is None or not valid.integer or shape.kind is tuple:
            with pytest.raises(TypeError):
                forms.number_limits(settings, name)
            continue
        limits, value = forms.number_limits(settings, name), getattr(settings, name)
        stands_for_none = shape.nullable and 0 not in valid
        assert limits["min_value"] == (0 if stands_for_none else valid.low), name
        assert limits["max_value"] == valid.high and limits["help"].startswith(chosen.help), name
        assert limits["value"] == (0 if value is None else value), name
        assert limits["min_value"] <= limits["value"] <= limits["max_value"], f"{name}: the default is outside the app"


def test_the_apps_limits_are_the_fields_range_narrowed_by_its_app_range():
    assert app_range(AtlasSettings, "sample_size") == Range(3, 1000, integer=True)  # a rho needs 3 neurons
    assert app_range(AtlasSettings, "val_images") == Range(8, 1000, integer=True)
    assert app_range(AtlasSettings, "seeds") == Range(2, 20, integer=True)
    assert app_range(AnalysisConfig, "seeds") == Range(1, 20, integer=True)
    assert app_range(FinetuneConfig, "epochs") == FinetuneConfig.options()["epochs"].range  # no app_range: the field's
    with pytest.raises(ConfigError, match=r"validation images must be in \[8, 1000\].*this app's limit.*\[1, 10000000\]"):
        AtlasSettings(val_images=5000).validate(app=True)
    assert AtlasSettings(val_images=5000).validate() == AtlasSettings(val_images=5000)  # the command line's
    assert forms.choices_within(FinetuneConfig, "lr", [0.0, 1e-3, 10.0, 11.0]) == [1e-3, 10.0]


# --- the validation ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("settings, message", [
    (AnalysisConfig(keep_ratios=(0.5, 0.0)), r"^keep ratio must be in \(0, 1\], got 0.0.$"),  # each item
    (AnalysisConfig(criteria=("l1", "magic")), "^Unknown criterion 'magic'"),
    (AnalysisConfig(criteria=()), "^Choose at least one criterion.$"),
    (AnalysisConfig(criteria="l1"), "^criteria must be a list, got 'l1'.$"),  # a string is no list of names
    (AnalysisConfig(layer=""), "^layer must be a name, or None for the backbone's head layer; got ''.$"),
    (AnalysisConfig(tau=None), "^tau must be given, got None.$"),  # None only where the type allows it
    (AtlasSettings(seeds=True), "seeds must be in"),  # a boolean is no number
    (AtlasSettings(seeds=1), "got 1. The atlas needs at least 2 random kept sets"),  # the field's note
    (AtlasSettings(layers=()), "^Choose at least one layer.$"),
    (AtlasSettings(criteria=("l1", "random")), "keep both criteria"),  # the class's rule between fields
    (FinetuneConfig(disk_cache="yes"), "^disk_cache must be true or false, got 'yes'.$"),
    (FinetuneConfig(checkpoint=" "), "^checkpoint must be a path"),
    (FinetuneConfig(weights="checkpoint"), "needs a checkpoint file"),
    (FinetuneConfig(layers=["a", ""]), "^layer must be a name; got ''.$"),
])
def test_validate_checks_every_field_from_its_metadata_then_the_rules_between_fields(settings, message):
    with pytest.raises(ConfigError, match=message):
        settings.validate()


def test_none_is_valid_where_the_type_allows_it():
    assert AtlasSettings(sample_size=None, layers=None).validate().sample_size is None
    assert FinetuneConfig(image_size=None, train_per_class=None, layers=None, checkpoint=None).validate()


def test_from_dict_reads_the_json_form_back_and_refuses_unknown_fields():
    settings = AtlasSettings.quick(layers=("head.1",))
    assert AtlasSettings.from_dict({**settings.to_dict(), "keep_ratios": [0.5, 0.25], "layers": ["head.1"]}) == settings
    assert AtlasResult.__dict__.get("settings_from_dict") is None  # one reading of stored settings
    with pytest.raises(ConfigError, match="Unknown AtlasSettings field"):
        AtlasSettings.from_dict({"sample": 3})


def test_a_backbone_registered_later_is_a_valid_choice(monkeypatch):
    """The backbone's choices are the registry itself, read when checked."""
    monkeypatch.setitem(registry.BACKBONES, "later", registry.BACKBONES["resnet18"])
    assert FinetuneConfig(backbone="later").validate()


def test_a_new_field_is_one_line_that_reaches_the_command_line_help_validation_and_the_form():
    @dataclass(frozen=True)
    class Demo(Settings):
        heads: int = option(3, "Heads trained with different seeds.", "demo", range=Range(1, 50, integer=True),
                            app_range=Range(1, 5))

    parser = argparse.ArgumentParser()
    add_settings_options(parser, Demo, quick=Demo(heads=1))
    assert "Heads trained with different seeds. Valid: [1, 50]. Default: 3 (--quick: 1)." in " ".join(
        parser.format_help().split())
    assert settings_from_args(parser.parse_args(["--heads", "7"]), Demo) == Demo(heads=7)
    with pytest.raises(ConfigError, match=r"heads must be in \[1, 50\]"):
        settings_from_args(parser.parse_args(["--heads", "0"]), Demo)
    assert forms.number_limits(Demo(), "heads") == {"min_value": 1, "max_value": 5, "value": 3,
                                                    "help": "Heads trained with different seeds."}
    assert replace(Demo(), heads=4).validate(app=True).heads == 4
