"""The portfolio is validated like any config: a bad file is refused before anything is trained or written, with
exit 2 and a message naming the file, the key, the rule and the value; the built-in one serves every task."""

from __future__ import annotations

import re

import pytest

from pipeline.auto.portfolio import load_portfolio, plan_for
from pipeline.cli import main
from pipeline.config import load_config
from tests.helpers.auto import auto_args, auto_config

LGB = '[[members]]\nname = "lgb2"\nfamily = "lightgbm"\n'

BAD_PORTFOLIOS = [
    ("[tunee]\nshare = 0.5\n", r"unknown key 'tunee'; did you mean 'tune'\?"),
    (
        '[[members]]\nnme = "a"\nfamily = "lightgbm"\n',
        r"unknown key 'members\.0\.nme'; did you mean 'members\.0\.name'\?",
    ),
    ('[[members]]\nname = "svm"\nfamily = "svm"\n', r"members\.0\.family: Input should be 'lightgbm'.*\(got 'svm'\)"),
    (
        LGB + "params = { num_leafs = 8 }\n",
        r"members\[0\]\.params\.num_leafs \(member 'lgb2'\) is not a LightGBM parameter.*did you mean num_leaf",
    ),
    (
        LGB + "params = { num_leaves = 1 }\n",
        r"members\[0\]\.params\.num_leaves \(member 'lgb2'\) = 1: LightGBM requires num_leaves > 1",
    ),
    (
        LGB + "params = { num_threads = 4 }\n",
        r"num_threads \(member 'lgb2'\) = 4: gbpipe sets num_threads itself.*set model\.num_threads instead",
    ),
    (LGB + "cost = 0\n", r"members\.0\.cost: Input should be greater than 0.*\(got 0\)"),
    (LGB + 'tasks = ["ranking"]\n', r"members\.0\.tasks\.0: Input should be 'binary', 'multiclass' or 'regression'"),
    (LGB + 'params_file = "best.json"\n', r"params_file is not read from a portfolio; give the parameters inline"),
    (
        '[[members]]\nname = "forest"\nfamily = "extra_trees"\nparams = { n_trees = 5 }\n',
        r"unknown extra_trees parameters \['n_trees'\]",
    ),
    (
        '[[members]]\nname = "forest"\nfamily = "random_forest"\nparams = { n_estimators = 0 }\n',
        r"members\[0\] \('forest'\).*'n_estimators' parameter .* must be an int in the range \[1, inf\)\. Got 0",
    ),
    ('[[members]]\nname = "lgb"\nfamily = "lightgbm"\n', r"name 'lgb' is gbpipe auto's own"),
    (LGB + LGB, r"members: names must be unique; repeated: \['lgb2'\]"),
    ("[tune]\nn_trials = 5\n", r"\['n_trials'\] are gbpipe auto's to set \(--max-trials"),
    ("[tune]\nshare = 1.5\n", r"tune\.share: Input should be less than or equal to 1 \(got 1\.5\)"),
    ("[tune.search_space]\nnum_leaves = { low = 64, high = 8 }\n", r"low must be below high \(got low=64, high=8\)"),
    ("[tune.fixed]\nnum_leafs = 8\n", r"\[tune\] fixed\.num_leafs is not a LightGBM parameter"),
    ('[ensemble]\nuse = "stack"\n', r"\['use'\] cannot be set in a portfolio's \[ensemble\]"),
    ('[ensemble]\ncombiners = ["vote"]\n', r"ensemble\.combiners\.0: Input should be 'hard_vote'"),
    ("[ensemble]\nbootstrap_n = 10\n", r"ensemble\.bootstrap_n: Input should be greater than or equal to 100"),
    ("members = 3 = 4\n", r"is not valid TOML"),
]


@pytest.mark.parametrize("text, message", BAD_PORTFOLIOS)
def test_a_bad_portfolio_is_refused_with_exit_2_naming_file_key_rule_and_value(tmp_path, capsys, text, message):
    portfolio = tmp_path / "bad_portfolio.toml"
    portfolio.write_text(text)
    config = auto_config(tmp_path, "refused")
    capsys.readouterr()
    assert main(auto_args(config, "--max-trials", "1", "--portfolio", str(portfolio))) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert str(portfolio) in err and "leave --portfolio out to use the built-in portfolio" in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # refused before the data is read or anything is written


def test_a_missing_portfolio_file_is_a_usage_error(tmp_path, capsys):
    config = auto_config(tmp_path, "missing")
    assert main(auto_args(config, "--max-trials", "1", "--portfolio", str(tmp_path / "nope.toml"))) == 2
    assert re.search(r"--portfolio .*nope\.toml not found", capsys.readouterr().err)


@pytest.mark.parametrize(
    "data, left_out",
    [
        ({"train": "sklearn:breast_cancer", "target": "target", "task": "binary"}, "ridge"),
        ({"train": "sklearn:wine", "target": "target", "task": "multiclass"}, "ridge"),
        ({"train": "sklearn:diabetes", "target": "target", "task": "regression"}, "logistic"),
    ],
)
def test_the_built_in_portfolio_serves_every_task(tmp_path, data, left_out):
    cfg = load_config(auto_config(tmp_path, f"builtin_{data['task']}", data), name_from_file=True)
    plan = plan_for(load_portfolio(), cfg)
    names = [p.member.name for p in plan.members]
    assert len(names) >= 6 and left_out not in names
    assert left_out in dict(plan.left_out)
    assert cfg.experiment.name == f"builtin_{data['task']}"  # no [experiment]: named after the file


def test_a_member_for_other_tasks_is_left_out_with_the_reason(tmp_path):
    portfolio = tmp_path / "portfolio_tasks.toml"
    portfolio.write_text(LGB + 'tasks = ["regression"]\n')
    cfg = load_config(auto_config(tmp_path, "tasks"), name_from_file=True)
    plan = plan_for(load_portfolio(portfolio), cfg)
    assert plan.members == () and dict(plan.left_out) == {"lgb2": "not for binary (tasks = ['regression'])"}
