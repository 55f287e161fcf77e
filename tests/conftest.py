"""Every test runs in its own empty working folder, so none can read or overwrite a
`model.npz` (or anything else) in the folder pytest was started from."""

import pytest


@pytest.fixture(autouse=True)
def _own_working_folder(tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
