"""Provenance of results (versions, commit) and files written whole or not at all."""

import os
import re

import pytest

from finitepref import atomic, provenance


def test_versions_name_the_installed_packages_and_skip_missing_ones():
    import numpy

    v = provenance.versions(("numpy", "no-such-package-xyz"))
    assert v["numpy"] == numpy.__version__ and "no-such-package-xyz" not in v
    assert {"python", "platform", "finitepref"} <= set(v)


def test_git_commit_is_a_hash_here_or_none_outside_git():
    commit = provenance.git_commit()
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty\.[0-9a-f]{12})?", commit)


def test_atomic_write_replaces_whole_and_leaves_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    atomic.write_text(path, "old")
    atomic.write_text(path, "new")
    assert path.read_text() == "new"

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic.write_text(path, "partial")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
