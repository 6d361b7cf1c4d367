"""Alignment fine-tuning on a tiny random llama: objective, frozen params, sharing rises, resume, orbax model dir."""

import numpy as np
import pytest

pytest.importorskip("torch")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxneurons as jn  # noqa: E402
from jaxneurons.alignment import (TrainConfig, alignment_loss, evaluate_token_items, make_batch, make_optimizer,  # noqa: E402
                                  objective_decoder, sharing_loss, train)
from tests.hf_reference import make_model  # noqa: E402

NUM_LANG = 3


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    make_model("llama_gqa_tied").save_pretrained(str(d))
    return jn.load_model(str(d))


def _items(n, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n):
        prompts = [rng.integers(1, 97, size=rng.integers(4, 9)).tolist() for _ in range(NUM_LANG)]
        gold = int(rng.integers(0, 3))
        options = [[[10], [20, 21], [30]] for _ in range(NUM_LANG)]
        items.append({"prompts": prompts, "answers": [options[0][gold]] * NUM_LANG, "options": options,
                      "gold": [gold] * NUM_LANG})
    return items


def test_sharing_loss_zero_iff_languages_agree():
    z = jnp.asarray(np.random.default_rng(0).normal(size=(3, 1, 2, 7)), jnp.float32)  # [B, N, L, F]
    agree = jnp.repeat(z, 4, axis=1)  # every language identical: all or none active
    assert float(sharing_loss(agree)) == 0.0
    disagree = agree.at[:, 0].set(-jnp.abs(agree[:, 0]) - 0.1)  # language 0 misses 3/4-shared neurons
    assert float(sharing_loss(disagree)) > 0.0
    few = jnp.full((1, 4, 1, 2), -1.0).at[:, 0].set(1.0)  # 1 of 4 < rho: not a target
    assert float(sharing_loss(few)) == 0.0


def test_gradient_reaches_only_trainable_parameters(lm):
    batch = make_batch(_items(2), lm.pad_id)
    decoder = objective_decoder(lm)
    cfg = TrainConfig(layers=(1,), lr=1e-2, warmup=1, steps=5, weight_decay=0.1)
    grads = jax.grad(lambda p: alignment_loss(p, decoder, batch, 1.0)[0])(lm.params)
    assert float(jnp.abs(grads["layers"]["mlp"]["gate"]["kernel"]).sum()) > 0
    opt = make_optimizer(lm.params, lm.config.num_layers, cfg)
    updates, _ = opt.update(grads, opt.init(lm.params), lm.params)
    flat = jax.tree_util.tree_flatten_with_path(updates)[0]
    for path, u in flat:
        keys = [p.key for p in path]
        u = np.asarray(u)
        if keys[:2] == ["layers", "mlp"]:
            assert np.all(u[[0, 2]] == 0), keys  # frozen layers
            assert np.any(u[1] != 0), keys
        else:
            assert np.all(u == 0), keys


def test_sharing_only_training_raises_all_shared(lm):
    items = _items(8)
    before = evaluate_token_items(lm, lm.params, items, ["a", "b", "c"])
    cfg = TrainConfig(lr=3e-3, warmup=2, steps=25, batch_size=8, lambda_sharing=1.0, margin=1.0)
    # Sharing loss only: empty answers make the task loss exactly 0.
    sharing_items = [dict(it, answers=[[]] * NUM_LANG) for it in items]
    params, history = train(lm, sharing_items, cfg, progress=False)
    assert history[0]["task"] == 0.0
    after = evaluate_token_items(lm, params, items, ["a", "b", "c"])
    assert after["all_shared_pct"] > before["all_shared_pct"] + 1.0, (before, after)
    assert history[-1]["sharing"] < history[0]["sharing"]


def test_resume_matches_uninterrupted_run(lm, tmp_path):
    items = _items(6)
    cfg = TrainConfig(layers=(0, 2), lr=1e-2, warmup=2, steps=6, batch_size=4, save_every=2, weight_decay=0.01)
    full, _ = train(lm, items, cfg, progress=False)
    ckpt = str(tmp_path / "ckpt")
    train(lm, items, cfg, checkpoint_dir=ckpt, stop_after=3, progress=False)
    resumed, hist = train(lm, items, cfg, checkpoint_dir=ckpt, resume=True, progress=False)
    assert [h["step"] for h in hist] == [4, 5, 6]
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any(np.any(np.asarray(a) != np.asarray(b)) for a, b in zip(jax.tree.leaves(full),
                                                                        jax.tree.leaves(lm.params)))


def test_orbax_model_dir_round_trip(lm, tmp_path):
    from jaxneurons.loading.orbax_dir import save_orbax_model

    params = jax.tree.map(lambda x: x * 1.01, lm.params)
    save_orbax_model(str(tmp_path / "model"), lm.config, params, lm.tokenizer, tokenizer_source=None)
    back = jn.load_model(str(tmp_path / "model"))
    assert back.config == lm.config
    ids = np.random.default_rng(1).integers(0, 97, size=(2, 7))
    want = jn.LanguageModel(lm.config, params).logits(ids)
    np.testing.assert_array_equal(np.asarray(back.logits(ids)), np.asarray(want))


def test_aligned_model_exports_to_transformers(lm, tmp_path):
    """What align.py writes to model_hf/: the fine-tuned params, loadable by transformers with the same logits."""
    import dataclasses

    import torch
    import transformers

    from jaxneurons.loading.export import export_hf

    cfg = TrainConfig(layers=(1,), lr=1e-2, warmup=1, steps=3, batch_size=4)
    params, _ = train(lm, _items(4), cfg, progress=False)
    aligned = dataclasses.replace(lm, params=params)
    export_hf(aligned, str(tmp_path / "model_hf"))
    ids = np.random.default_rng(2).integers(1, 97, size=(2, 7))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "model_hf"), dtype=torch.float32)
    with torch.no_grad():
        theirs = model(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(theirs, np.asarray(aligned.logits(ids)), atol=1e-4, rtol=0)
    assert not np.allclose(theirs, np.asarray(lm.logits(ids)), atol=1e-4)  # the fine-tuning is in the export


def test_orbax_model_loads_only_the_tokenizer_of_its_source(lm, tmp_path, monkeypatch):
    """An orbax model dir without tokenizer files takes its source's tokenizer, never its source's weights."""
    import jaxneurons.loading as loading
    from jaxneurons.loading import zoo
    from jaxneurons.loading.orbax_dir import save_orbax_model

    try:
        zoo.resolve_zoo("smollm2-135m")
    except (ModuleNotFoundError, FileNotFoundError) as e:
        pytest.skip(str(e))
    save_orbax_model(str(tmp_path / "model"), lm.config, lm.params, None, tokenizer_source="smollm2-135m")

    def no_weights(*args, **kwargs):
        raise AssertionError("the source model's weights were loaded")

    monkeypatch.setattr(loading, "_from_gguf", no_weights)
    back = jn.load_model(str(tmp_path / "model"))
    assert back.tokenizer("Hello world")["input_ids"] == loading.load_tokenizer("smollm2-135m")("Hello world")["input_ids"]
    assert len(back.tokenizer("Hello world")["input_ids"]) >= 2
