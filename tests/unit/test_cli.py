"""The command line's arguments: each `models` action takes only its own options, so that an option meant
for another action (`promote RUN --dry-run`) is refused instead of silently ignored."""

import pytest

from numtaflow import cli


def parse(*argv: str):
    return cli.build_parser().parse_args(argv)


@pytest.mark.parametrize("argv, refused", [
    (("models", "promote", "r1", "--dry-run"), "unrecognized arguments: --dry-run"),
    (("models", "rollback", "--keep", "3"), "unrecognized arguments: --keep"),
    (("models", "list", "--reason", "x"), "unrecognized arguments: --reason x"),
    (("models", "prune", "r1"), "unrecognized arguments: r1"),
    (("models", "show"), "the following arguments are required: RUN"),
    (("models", "promote"), "the following arguments are required: RUN"),
    (("models", "prune", "--keep", "-1"), "argument --keep: must be at least 0, not -1"),
    (("drop-batch", "--per-class", "0"), "argument --per-class: must be at least 1, not 0"),
])
def test_arguments_an_action_does_not_take_are_refused(argv, refused, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(*argv)
    assert exit_.value.code == 2 and refused in capsys.readouterr().err


def test_each_models_action_reaches_its_own_command():
    prune = parse("models", "prune", "--keep", "0", "--older-than", "0", "--dry-run")
    assert (prune.func, prune.keep, prune.older_than, prune.dry_run) == (cli.cmd_models_prune, 0, 0, True)
    defaults = parse("models", "prune")
    assert (defaults.keep, defaults.older_than, defaults.dry_run) == (5, 7, False)
    promote = parse("models", "promote", "r1", "--reason", "better on the new scans")
    assert (promote.func, promote.action, promote.run, promote.reason) == (
        cli.cmd_models_change, "promote", "r1", "better on the new scans")
    rollback = parse("models", "rollback")
    assert (rollback.func, rollback.action, rollback.version, rollback.reason) == (
        cli.cmd_models_change, "rollback", None, None)
    assert parse("models", "show", "r1").func is cli.cmd_models_show
    assert parse("models", "list").func is cli.cmd_models_list


def test_a_setting_with_a_wrong_value_is_one_line_naming_it(monkeypatch, capsys):
    monkeypatch.setenv("NUMTAFLOW_PER_CLASS", "1")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["submit", "validate", "--run-id", "manual__x", "--print-only"])
    assert exit_.value.code == ("numtaflow submit: invalid settings: NUMTAFLOW_PER_CLASS='1': Input should be greater "
                                "than or equal to 2")  # the variable to fix, not the field behind it


@pytest.mark.parametrize("settings_json, refused", [
    ('{"per_clas": 3}', "unknown run setting(s): per_clas"),
    ("{per_class: 3}", "--settings-json is not JSON: Expecting property name enclosed in double quotes"),
    ("[3]", "--settings-json must be a JSON object of settings, not [3]"),
])
def test_a_run_settings_document_that_cannot_be_taken_is_one_line(settings_json, refused):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["submit", "validate", "--run-id", "manual__x", "--settings-json", settings_json, "--print-only"])
    assert str(exit_.value.code).startswith(f"numtaflow submit: {refused}")
