"""Alignment fine-tuning on a tiny random llama: the pipeline's batch layout, objective, frozen params, sharing
rises, resume, orbax model dir."""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("torch")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxneurons as jn  # noqa: E402
from jaxneurons.alignment import (TrainConfig, alignment_loss, make_batch, make_optimizer,  # noqa: E402
                                  objective_decoder, sharing_loss, train, training_rows)
from jaxneurons.alignment.experiment import evaluate  # noqa: E402
from jaxneurons.pipeline.batching import TokenizedRow, gold_inputs, plan_batches  # noqa: E402
from jaxneurons.tasks import get_task  # noqa: E402
from tests.hf_reference import make_model  # noqa: E402
from tests.test_pipeline import LANGS, tiny_lm  # noqa: E402

NUM_LANG = 3


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    make_model("llama_gqa_tied").save_pretrained(str(d))
    return jn.load_model(str(d))


def _rows(n, seed=0):
    """[n][NUM_LANG] TokenizedRow: a random prompt and its gold continuation (one of three options)."""
    rng = np.random.default_rng(seed)
    options = ((10,), (20, 21), (30,))
    rows = []
    for _ in range(n):
        gold = options[int(rng.integers(0, 3))]
        rows.append([TokenizedRow(tuple(int(t) for t in rng.integers(1, 97, size=rng.integers(4, 9))), (gold,), (0,))
                     for _ in range(NUM_LANG)])
    return rows


def test_batch_is_the_pipelines_forward():
    """make_batch's arrays are those of the plan's neuron forward over the same rows (no packing, "last")."""
    rows = _rows(5, seed=1)
    plan = plan_batches(rows, batch_size=5, neuron_position="last", padding_side="right", pad_id=0, pack=False)
    batch = plan.batch(0)
    ours = make_batch([rows[e] for e in batch.example_index_b], pad_id=0)
    theirs = batch.neuron_inputs.arrays()
    assert ours.keys() == theirs.keys()
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    assert ours["targets_rj"].shape == (5 * NUM_LANG, 2)
    padded = make_batch(rows, pad_id=0, answer_len=5)  # one continuation length for a whole run
    assert padded["targets_rj"].shape == (5 * NUM_LANG, 5) and padded["target_mask_rj"].sum() == theirs[
        "target_mask_rj"].sum()


def test_make_batch_refuses_what_the_objective_cannot_read():
    rows = _rows(2)
    with pytest.raises(ValueError, match="same languages"):
        make_batch([rows[0], rows[1][:2]], pad_id=0)
    with pytest.raises(ValueError, match="prompt's last token"):
        make_batch([[dataclasses.replace(r, readout_extra=1) for r in ex] for ex in rows], pad_id=0)
    with pytest.raises(ValueError, match="k=1 is shorter"):
        gold_inputs([r for ex in rows for r in ex] + [TokenizedRow((1, 2), ((3, 4),), (0,))], 0, k=1)


def test_task_loss_is_the_mean_per_token_nll(lm):
    """L_task: per row the mean NLL of its gold tokens (from the full logits), then the mean over rows."""
    rows = _rows(2, seed=2)
    batch = make_batch(rows, lm.pad_id)
    _, aux = alignment_loss(lm.params, objective_decoder(lm), batch, 0.0, num_languages=NUM_LANG)
    nll = []
    for ex in rows:
        for r in ex:
            seq = r.prompt + r.continuations[0]
            logp = np.asarray(jax.nn.log_softmax(lm.logits(np.asarray([seq]))[0].astype(jnp.float32), -1))
            n = len(r.prompt)
            nll.append(-np.mean([logp[n - 1 + k, t] for k, t in enumerate(r.continuations[0])]))
    np.testing.assert_allclose(float(aux["task"]), np.mean(nll), rtol=1e-5)


def test_sharing_loss_zero_iff_languages_agree():
    z = jnp.asarray(np.random.default_rng(0).normal(size=(3, 1, 2, 7)), jnp.float32)  # [B, N, L, F]
    agree = jnp.repeat(z, 4, axis=1)  # every language identical: all or none active
    assert float(sharing_loss(agree)) == 0.0
    disagree = agree.at[:, 0].set(-jnp.abs(agree[:, 0]) - 0.1)  # language 0 misses 3/4-shared neurons
    assert float(sharing_loss(disagree)) > 0.0
    few = jnp.full((1, 4, 1, 2), -1.0).at[:, 0].set(1.0)  # 1 of 4 < rho: not a target
    assert float(sharing_loss(few)) == 0.0


def test_gradient_reaches_only_trainable_parameters(lm):
    batch = make_batch(_rows(2), lm.pad_id)
    decoder = objective_decoder(lm)
    cfg = TrainConfig(layers=(1,), lr=1e-2, warmup=1, steps=5, weight_decay=0.1)
    grads = jax.grad(lambda p: alignment_loss(p, decoder, batch, 1.0, num_languages=NUM_LANG)[0])(lm.params)
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


def test_sharing_only_training_raises_all_shared(tmp_path):
    """Measured by the sharing pipeline's evaluation on the trained params (the one the run reports)."""
    lm = tiny_lm(seed=0)
    task = get_task("builtin_nli")
    examples = task.load(LANGS, num_examples=8, prompt_format="paper").examples
    before = evaluate(lm, lm.params, task, examples, LANGS, str(tmp_path / "before"))
    cfg = TrainConfig(lr=3e-3, warmup=2, steps=25, batch_size=8, lambda_sharing=1.0, margin=1.0)
    # Sharing loss only: empty answers make the task loss exactly 0.
    rows = [[dataclasses.replace(r, continuations=((),)) for r in ex] for ex in training_rows(lm, examples, LANGS)]
    params, history = train(lm, rows, cfg, progress=False)
    assert history[0]["task"] == 0.0
    after = evaluate(lm, params, task, examples, LANGS, str(tmp_path / "after"))
    assert after["all_shared_pct"] > before["all_shared_pct"] + 1.0, (before, after)
    assert history[-1]["sharing"] < history[0]["sharing"]


def test_resume_matches_uninterrupted_run(lm, tmp_path):
    items = _rows(6)
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
    params, _ = train(lm, _rows(4), cfg, progress=False)
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
