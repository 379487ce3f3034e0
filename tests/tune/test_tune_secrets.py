"""Credentials in `--storage` URLs are never printed or stored: redaction, the unencoded-'@' refusal, driver
messages, and a real study on PostgreSQL (password as a query parameter, and from PGPASSWORD)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import optuna
import pytest
from sqlalchemy.engine import URL, make_url

from pipeline.cli import main
from pipeline.core.errors import ConfigError
from pipeline.tune import storage as storage_module
from pipeline.tune.storage import open_storage, redact, scrub
from tests.helpers.paths import ROOT
from tests.helpers.tune import cli_command, postgres_url, study_dir, tune_config

PG = "postgresql+psycopg2://"


@pytest.mark.parametrize(
    "url, expected",
    [
        (f"{PG}gbpipe:Zq7s3cr3t@db.example:5432/gbpipe", f"{PG}gbpipe:***@db.example:5432/gbpipe"),
        (f"{PG}gbpipe:Zq7@secret@127.0.0.1:5432/db", f"{PG}gbpipe:***@127.0.0.1:5432/db"),
        (f"{PG}gbpipe:Zq7:sec/ret?x@h/db", f"{PG}gbpipe:***@h/db"),
        (f"{PG}gbpipe:Zq7%40s%3Acret@h/db", f"{PG}gbpipe:***@h/db"),
        (f"{PG}gbpipe@h:5432/db?password=Zq7s3cr3t", f"{PG}gbpipe@h:5432/db?password=***"),
        (
            f"{PG}gbpipe@h/db?sslmode=require&sslpassword=Zq7&passfile=/home/u/.pgpass",
            f"{PG}gbpipe@h/db?sslmode=require&sslpassword=***&passfile=/home/u/.pgpass",
        ),
        (
            f"{PG}gbpipe@h/db?PassWord=Zq7&Api_Token=t0k&client_SECRET=s",
            f"{PG}gbpipe@h/db?PassWord=***&Api_Token=***&client_SECRET=***",
        ),
        (f"{PG}gbpipe@h/db?pass%77ord=Zq7%40x", f"{PG}gbpipe@h/db?pass%77ord=***"),
        (f"{PG}u:Zq7@h/db?password=a@b&application_name=gb", f"{PG}u:***@h/db?password=***&application_name=gb"),
        (f"{PG}gbpipe@127.0.0.1:5432/gbpipe_test", f"{PG}gbpipe@127.0.0.1:5432/gbpipe_test"),
        (f"{PG}db.example/gbpipe?sslmode=require", f"{PG}db.example/gbpipe?sslmode=require"),
        ("sqlite:////tmp/study.db", "sqlite:////tmp/study.db"),
        ("runs/x/tune/default/study.journal", "runs/x/tune/default/study.journal"),
    ],
)
def test_redact_removes_every_credential_and_nothing_else(url, expected):
    assert redact(url) == expected
    assert redact(expected) == expected  # outputs may be redacted twice


@pytest.mark.parametrize(
    "url, message, expected",
    [
        (f"{PG}u:Zq7:secret@h/db", 'bad password "Zq7:secret"', 'bad password "***"'),
        (f"{PG}u:Zq7%40secret@h/db", 'host "Zq7@secret" and secret@h', 'host "***" and ***@h'),
        (f"{PG}u@h/db?sslpassword=k3y%2Bpass", "cannot decrypt with k3y+pass", "cannot decrypt with ***"),
        (f"{PG}u:ab@h/db", "user u: ab and abc", "user u: *** and ***c"),
        (f"{PG}u@h/db", "connection refused", "connection refused"),
    ],
)
def test_scrub_masks_the_secret_and_its_pieces_in_driver_messages(url, message, expected):
    assert scrub(message, url) == expected


def test_a_driver_message_quoting_the_password_is_scrubbed(tmp_path, monkeypatch):
    class FakeStorage:
        def __init__(self, url, **kwargs):
            raise RuntimeError('could not connect: password "Zq7:secret" for user gbpipe rejected')

    monkeypatch.setattr(storage_module, "RDBStorage", FakeStorage)
    with pytest.raises(ConfigError, match=r"cannot open the database") as raised:
        open_storage(f"{PG}gbpipe:Zq7:secret@127.0.0.1:1/db", tmp_path)
    assert "Zq7" not in str(raised.value) and "secret" not in str(raised.value)


def test_an_unencoded_at_in_the_password_is_refused_without_echoing_it(tmp_path, adult, capsys):
    config = tune_config(tmp_path, adult)
    url = f"{PG}gbpipe:Zq7@secret@127.0.0.1:5432/gbpipe_test"
    assert main(["tune", "--config", str(config), "--storage", url, "--n-trials", "1"]) == 2
    out, err = capsys.readouterr()
    assert "%40" in err and "PGPASSWORD" in err and ".pgpass" in err
    for piece in ("Zq7", "secret"):
        assert piece not in out + err
    assert not study_dir(config).exists()  # refused before the data or the database was touched


# ---- a real study on PostgreSQL ----
def _secret_leaks(folder: Path, text: str, secret: str) -> list[str]:
    leaks = [str(p) for p in sorted(folder.rglob("*")) if p.is_file() and secret.encode() in p.read_bytes()]
    return leaks + (["stdout/stderr"] if secret in text else [])


@pytest.mark.parametrize("where", ["query", "PGPASSWORD"])
def test_a_postgresql_study_stores_and_prints_no_password(tmp_path, adult, where):
    env_url = make_url(postgres_url())
    password = env_url.password
    assert password, "the test database URL must carry the password to move it elsewhere"
    bare = URL.create(env_url.drivername, env_url.username, None, env_url.host, env_url.port, env_url.database)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if where == "query":
        url = bare.update_query_dict({"password": password}).render_as_string(hide_password=False)
    else:
        url = bare.render_as_string(hide_password=False)
        env["PGPASSWORD"] = password
    config = tune_config(tmp_path, adult, rows=1000)
    name = f"secrets_{uuid.uuid4().hex[:8]}"
    command = cli_command(config, "--storage", url, "--study-name", name, "--n-trials", "2")
    try:
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert not _secret_leaks(tmp_path / "runs", proc.stdout + proc.stderr, password)
        summary = json.loads((study_dir(config, name) / "tune.json").read_text())
        expected = redact(url) if where == "query" else url  # a URL without credentials is stored as given
        assert summary["storage"] == expected and summary["n_finished"] == 2
        assert json.loads((study_dir(config, name) / "manifest.json").read_text())["storage"] == expected
    finally:
        with contextlib.suppress(KeyError):  # the study was never created
            optuna.delete_study(study_name=name, storage=postgres_url())
