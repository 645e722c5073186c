"""The operator's catalog: a TOML file and AUGSTREAM_* variables, validated with the field
named; credentials come from the environment and are never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from augstream_service.catalog import Catalog, DatasetConfig
from augstream_service.settings import load_settings

CONFIG = """
threads = 3
[catalog.cats]
url = "s3://lab-images/cats"
storage_options = { endpoint_url = "http://127.0.0.1:9000" }
storage_options_env = { key = "LAB_KEY", secret = "LAB_SECRET" }
on_corrupt = "skip"

[catalog.web]
url = "https://files.example.org/digits"
layout = "manifest"
manifest = "train.csv"
listing_ttl_s = 600
"""


def test_a_config_file_with_the_environment_and_overrides_above_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "augstream.toml"
    config.write_text(CONFIG)
    monkeypatch.setenv("AUGSTREAM_PREFETCH", "7")
    monkeypatch.setenv("AUGSTREAM_THREADS", "5")
    settings = load_settings(config, threads=2)
    assert (settings.threads, settings.prefetch) == (2, 7)
    assert settings.catalog["cats"].storage_options == {"endpoint_url": "http://127.0.0.1:9000"}
    assert settings.catalog["web"].manifest == "train.csv"
    monkeypatch.setenv("AUGSTREAM_CATALOG__DOGS__URL", str(tmp_path))
    assert load_settings(config).catalog["dogs"].url == str(tmp_path)


def test_config_mistakes_name_the_field(tmp_path: Path) -> None:
    config = tmp_path / "augstream.toml"
    config.write_text('[catalog.cats]\nurl = "s3://b/c"\nlayuot = "folders"\n')
    with pytest.raises(ValidationError, match=r"catalog\.cats\.layuot"):
        load_settings(config)
    config.write_text("threads = [")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_settings(config)
    with pytest.raises(ValueError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ValidationError, match="manifest"):
        DatasetConfig(url="http://x/y", layout="manifest")
    with pytest.raises(ValidationError, match="leaves the dataset"):
        DatasetConfig(url="http://x/y", layout="manifest", manifest="../up.csv")


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = DatasetConfig(url="memory://lab/cats", storage_options_env={"secret": "LAB_SECRET"})
    monkeypatch.delenv("LAB_SECRET", raising=False)
    with pytest.raises(ValueError, match="needs the variable LAB_SECRET") as caught:
        Catalog.from_folders([], configs={"cats": config})
    assert "dataset 'cats'" in str(caught.value)
    monkeypatch.setenv("LAB_SECRET", "hunter2")
    catalog = Catalog.from_folders([], configs={"cats": config})
    assert "hunter2" not in repr(catalog.get("cats").store.url)


def test_credentials_come_from_secret_files(tmp_path: Path) -> None:
    secret = tmp_path / "s3_secret"
    config = DatasetConfig(url="memory://lab/cats", storage_options_files={"secret": secret})
    with pytest.raises(ValueError, match=r"cannot read .*s3_secret") as caught:
        Catalog.from_folders([], configs={"cats": config})
    assert "dataset 'cats'" in str(caught.value)
    secret.write_text("hunter2\n")
    store = Catalog.from_folders([], configs={"cats": config}).get("cats").store
    assert store.fs.storage_options["secret"] == "hunter2"


def test_a_web_server_needs_a_manifest() -> None:
    with pytest.raises(ValueError, match="cannot be listed: give it a manifest"):
        Catalog.from_folders([], configs={"web": DatasetConfig(url="http://127.0.0.1:9/x")})
