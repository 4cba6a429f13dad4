"""Settings: explicit argument > SME_QA_* environment > default, with types coerced."""

from __future__ import annotations

from pathlib import Path

import pytest

from sme_qa.settings import DEFAULT_MODEL, Settings


def test_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("SME_QA_CACHE", raising=False)
    monkeypatch.delenv("SME_QA_PORT", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    s = Settings.load()
    assert (s.corpus, s.vectors, s.model) == (Path("corpus"), Path("vectors"), DEFAULT_MODEL)
    assert (s.host, s.port, s.auth, s.llm_timeout) == ("127.0.0.1", 7860, None, 60.0)
    assert s.cache_dir == tmp_path / "xdg" / "sme-qa"  # read when the settings are made, not at import


def test_environment_beats_default_and_argument_beats_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SME_QA_VECTORS", str(tmp_path / "env-vectors"))
    monkeypatch.setenv("SME_QA_PORT", "8123")
    monkeypatch.setenv("SME_QA_LLM_TIMEOUT", "2.5")
    monkeypatch.setenv("SME_QA_MODEL", "")  # empty means unset
    s = Settings.load()
    assert s.vectors == tmp_path / "env-vectors" and s.port == 8123 and s.llm_timeout == 2.5
    assert s.model == DEFAULT_MODEL
    s = Settings.load(vectors=tmp_path / "arg", port=9000, model="other/model")
    assert (s.vectors, s.port, s.model) == (tmp_path / "arg", 9000, "other/model")
    s = Settings.load(vectors=None, port=None)  # None is "not given": the environment stays
    assert (s.vectors, s.port) == (tmp_path / "env-vectors", 8123)


def test_paths_expand_the_home_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Settings.load(corpus="~/news").corpus == tmp_path / "news"


def test_unknown_setting_and_bad_number(monkeypatch):
    with pytest.raises(TypeError, match="unknown settings: colour"):
        Settings.load(colour="red")
    monkeypatch.setenv("SME_QA_PORT", "eighty")
    with pytest.raises(ValueError):
        Settings.load()
