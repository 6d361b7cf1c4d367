"""Models by hub id: a local Hugging Face cache in the hub's own layout, read offline (no network here)."""

import hashlib
import os

import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.loading import has_tokenizer, hub, read_max_context, read_model_config
from tests.fixtures import tiny_lm

REPO_ID = "tiny-org/tiny-llama"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_hub_cache(cache, repo_id: str, files_dir: str, commit: str = COMMIT, ref: str = "main") -> str:
    """The cache layout huggingface_hub writes: blobs/<sha256>, snapshots/<commit>/<file> -> ../../blobs/<sha256>,
    refs/<ref> holding the commit. Returns the snapshot folder."""
    repo = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    snapshot = os.path.join(repo, "snapshots", commit)
    os.makedirs(os.path.join(repo, "blobs"), exist_ok=True)
    os.makedirs(snapshot, exist_ok=True)
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    for name in os.listdir(files_dir):
        data = open(os.path.join(files_dir, name), "rb").read()
        blob = hashlib.sha256(data).hexdigest()
        with open(os.path.join(repo, "blobs", blob), "wb") as f:
            f.write(data)
        os.symlink(os.path.join("..", "..", "blobs", blob), os.path.join(snapshot, name))
    with open(os.path.join(repo, "refs", ref), "w") as f:
        f.write(commit)
    return snapshot


@pytest.fixture(scope="module")
def tiny():
    return tiny_lm()


@pytest.fixture
def hub_cache(tiny, tmp_path, monkeypatch):
    """A cache holding the tiny model as REPO_ID, offline: HF_HUB_CACHE and HF_HUB_OFFLINE=1 for this test."""
    exported = jn.export_hf(tiny, str(tmp_path / "export"))
    cache = str(tmp_path / "hf_cache")
    write_hub_cache(cache, REPO_ID, exported)
    monkeypatch.setenv("HF_HUB_CACHE", cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_the_cache_is_in_the_hubs_own_layout(hub_cache):
    from huggingface_hub import scan_cache_dir

    (repo,) = scan_cache_dir(hub_cache).repos
    assert repo.repo_id == REPO_ID and repo.repo_type == "model"
    (revision,) = repo.revisions
    assert revision.commit_hash == COMMIT and revision.refs == {"main"}
    assert {f.file_name for f in revision.files} >= {"config.json", "model.safetensors", "tokenizer.json"}


def test_load_by_hub_id_offline_gives_the_models_logits(hub_cache, tiny):
    lm = jn.load_model(REPO_ID)
    assert lm.source == REPO_ID
    ids, mask = tiny.encode(["Hello hub", "a"])
    np.testing.assert_allclose(np.asarray(lm.logits(ids, mask)), np.asarray(tiny.logits(ids, mask)), atol=1e-5)
    assert lm.tokenizer("Hello hub")["input_ids"] == tiny.tokenizer("Hello hub")["input_ids"]
    # The launcher's checks before the load resolve the id the same way.
    assert read_model_config(REPO_ID) == lm.config
    assert has_tokenizer(REPO_ID) and read_max_context(REPO_ID) == read_max_context(hub.snapshot(REPO_ID))


def test_revision_by_argument_and_by_at(hub_cache, tiny):
    by_argument = jn.load_model(REPO_ID, revision=COMMIT)
    assert by_argument.source == f"{REPO_ID}@{COMMIT}"
    assert hub.snapshot(f"{REPO_ID}@{COMMIT}") == hub.snapshot(REPO_ID, revision=COMMIT)
    with pytest.raises(ValueError, match="names revision"):
        hub.snapshot(f"{REPO_ID}@{COMMIT}", revision="main")
    with pytest.raises(ValueError, match="revision='main' is for Hugging Face hub ids"):
        jn.load_model("smollm2-135m", revision="main")


def test_an_id_not_in_the_cache_offline_is_one_line(hub_cache):
    for call in (lambda: jn.load_model("tiny-org/absent"), lambda: read_model_config("tiny-org/absent"),
                 lambda: has_tokenizer("tiny-org/absent"),
                 lambda: jn.load_model(REPO_ID, revision="v9")):
        with pytest.raises(FileNotFoundError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and hub_cache in message and "HF_HUB_OFFLINE=1" in message
        assert "tiny-org/" in message and "huggingface-cli download" in message


def test_what_reads_as_a_hub_id():
    assert hub.is_hub_id("google/gemma-3-270m") and hub.is_hub_id("Qwen/Qwen2.5-0.5B@main")
    for not_an_id in ("smollm2-135m", "models/x.gguf", "a/b/c", "/abs/path", "./rel", "a/b.safetensors", "org/"):
        assert not hub.is_hub_id(not_an_id), not_an_id
    with pytest.raises(FileNotFoundError, match="neither a zoo model .* nor a Hugging Face hub id"):
        jn.load_model("no-such-model")  # neither path, zoo name nor id: the old message, with the hub added


def test_environment_is_read_at_call_time(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert hub.cache_dir() == str(tmp_path) and not hub.offline()
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    assert hub.cache_dir() == str(tmp_path / "home" / "hub") and hub.offline()


def test_every_hub_failure_is_one_line_naming_the_id():
    """The online failures (no network here): each of the hub's errors, by name, gives its own advice."""
    advice = {"RepositoryNotFoundError": "log in", "GatedRepoError": "gated/private", "HFValidationError": "not valid",
              "RevisionNotFoundError": "has no revision 'v2'", "LocalEntryNotFoundError": "check the network"}
    for name, expected in advice.items():
        error = type(name, (Exception,), {})("first line\nsecond line")
        message = hub._message(error, "org/name", "v2", "/cache", local_only=False)
        assert expected in message and "'org/name'" in message and "\n" not in message, (name, message)
        assert message.startswith("'org/name' at revision 'v2' is no local path or zoo model")
