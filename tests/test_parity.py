"""Every family matches transformers' PyTorch logits and hooked neurons on tiny random configs (float32)."""

import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.lm import pad_rows

hf_reference = pytest.importorskip("tests.hf_reference")

LENGTHS = [10, 7, 3]  # shorter than, equal to and longer than the sliding windows of the variants


def _batch(vocab, side, seed=1):
    rng = np.random.default_rng(seed)
    rows = [list(rng.integers(1, vocab, size=n)) for n in LENGTHS]
    return pad_rows(rows, 0, side)


@pytest.fixture(scope="module", params=sorted(hf_reference.VARIANTS))
def pair(request, tmp_path_factory):
    model = hf_reference.make_model(request.param)
    directory = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(directory, max_shard_size="40KB")  # sharded safetensors + index
    return request.param, model, jn.load_model(str(directory), dtype="float32")


@pytest.mark.parametrize("side", ["right", "left"])
def test_logits_and_neurons_match_pytorch(pair, side):
    name, model, lm = pair
    ids, mask = _batch(lm.config.vocab_size, side)
    ref_logits, ref_act, ref_hidden = hf_reference.reference(model, ids, mask)
    real = mask.astype(bool)
    logits = np.asarray(lm.logits(ids, mask))
    np.testing.assert_allclose(logits[real], ref_logits[real], atol=1e-4, rtol=0, err_msg=name)
    for quantity, ref in (("act", ref_act), ("ffn_hidden", ref_hidden)):
        every = np.asarray(lm.neurons(ids, mask, at="every", quantity=quantity))
        np.testing.assert_allclose(every[real], ref[real], atol=1e-5, rtol=0, err_msg=f"{name} {quantity}")
        last = np.asarray(lm.neurons(ids, mask, at="last", quantity=quantity))
        last_index = [np.flatnonzero(row)[-1] for row in mask]
        np.testing.assert_allclose(last, ref[np.arange(len(ids)), last_index], atol=1e-5, rtol=0)
        most = np.asarray(lm.neurons(ids, mask, at="max", quantity=quantity))
        expected = np.stack([ref[i][real[i]].max(0) for i in range(len(ids))])
        np.testing.assert_allclose(most, expected, atol=1e-5, rtol=0)


def test_padding_side_does_not_change_results(pair):
    _, _, lm = pair
    right = lm.neurons(*_batch(lm.config.vocab_size, "right"), at="last")
    left = lm.neurons(*_batch(lm.config.vocab_size, "left"), at="last")
    np.testing.assert_allclose(np.asarray(right), np.asarray(left), atol=1e-5)


def test_mistral_slides_in_every_layer_whatever_its_layer_types_say(tmp_path):
    """MistralForCausalLM ignores layer_types (transformers only warns): every layer slides, here as there."""
    kinds = ["full_attention", "sliding_attention", "full_attention"]
    model = hf_reference.make_model("mistral_sliding", layer_types=kinds)
    model.save_pretrained(tmp_path)
    lm = jn.load_model(str(tmp_path), dtype="float32")
    assert lm.config.is_local() == (True,) * 3
    ids, mask = _batch(lm.config.vocab_size, "right")
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(lm.logits(ids, mask))[real],
                               hf_reference.reference(model, ids, mask)[0][real], atol=1e-4, rtol=0)


def test_packed_rows_match_pytorch(pair):
    """Sequences laid one after another in one row (segment ids 1, 2, 3) give each sequence's own results."""
    name, model, lm = pair
    ids, mask = _batch(lm.config.vocab_size, "right")
    ref_logits, ref_act, _ = hf_reference.reference(model, ids, mask)
    packed = np.zeros((1, sum(LENGTHS) + 2), np.int32)  # two padding tokens at the end
    segments, record, start = np.zeros_like(packed), [], 0
    for j, n in enumerate(LENGTHS):
        packed[0, start:start + n], segments[0, start:start + n] = ids[j, :n], j + 1
        record.append(start + n - 1)
        start += n
    out = lm.forward(packed, segments, record=jn.Record(("act",), "last"), record_index=np.array([record]))
    act = np.asarray(out.activations["act"])[0]  # [K, L, F]
    for j, n in enumerate(LENGTHS):
        np.testing.assert_allclose(act[j], ref_act[j, n - 1], atol=1e-5, rtol=0, err_msg=f"{name} sequence {j}")
        np.testing.assert_allclose(np.asarray(out.logits)[0, record[j]], ref_logits[j, n - 1],
                                   atol=1e-4, rtol=0, err_msg=name)
