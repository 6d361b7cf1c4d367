"""Integrated gradients, static scores and interventions against plain recomputations (float32, tiny models)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.attribution.ig import (PATHS, IGResult, completeness_error, integrated_gradients, left_padded,
                                      quadrature, replay_plan)
from jaxneurons.attribution.static import static_scores
from jaxneurons.lm import pad_rows

hf_reference = pytest.importorskip("tests.hf_reference")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module", params=["llama_gqa_tied", "gemma3_sliding", "bloom_alibi_6heads"])
def pair(request, tmp_path_factory):
    """(our model, the same PyTorch model)."""
    directory = tmp_path_factory.mktemp(request.param)
    model = hf_reference.make_model(request.param)
    model.save_pretrained(directory)
    return jn.load_model(str(directory)), model


@pytest.fixture(scope="module")
def lm(pair):
    return pair[0]


def _prompts(lm, side="right"):
    rng = np.random.default_rng(0)
    return pad_rows([list(rng.integers(1, lm.config.vocab_size, n)) for n in (9, 6)], 0, side)


def naive_ig(lm, ids, mask, targets, alphas, weights):
    """Knowledge-Neurons IG as written in the paper: the whole prompt forward and backward per layer and alpha."""
    ids, mask = left_padded(ids, mask)
    batch, (layers, width) = len(ids), (lm.config.num_layers, lm.config.neurons_per_layer)
    where = np.zeros(ids.shape, bool)
    where[:, -1] = True

    def prob(scale_bf, layer):
        scale = jnp.ones((batch, layers, width)).at[:, layer].set(scale_bf)
        logits = lm.logits(ids, mask, jn.Intervention(scale, jnp.zeros_like(scale), jnp.asarray(where)))
        return jax.nn.softmax(logits[:, -1], -1)[jnp.arange(batch), targets].sum()

    out = np.zeros((batch, layers, width))
    for layer in range(layers):
        for alpha, weight in zip(alphas, weights):
            out[:, layer] += weight * np.asarray(jax.grad(prob)(jnp.full((batch, width), alpha), layer))
    return out


def torch_ig(model, ids, mask, targets, alphas, weights, frozen_norm):
    """IG written plainly in PyTorch, row by row without padding: for each layer and alpha, the whole prompt
    forward and backward, m at the last token scaled by s (a hook on the down projection's input). frozen_norm:
    that layer's post-feedforward RMSNorm (Gemma 3) uses, at the last token, its input's 1/RMS from the clean
    forward instead of its own."""
    downs = [down for _, down in hf_reference._mlp_modules(model)]
    base = model.transformer if hasattr(model, "transformer") else model.model
    posts = [getattr(layer, "post_feedforward_layernorm", None) for layer in getattr(base, "layers", [])]
    out = np.zeros((len(ids), len(downs), downs[0].in_features))
    for b, (row, row_mask, target) in enumerate(zip(ids, mask, targets)):
        prompt = torch.tensor(row[row_mask.astype(bool)])[None]
        clean_inputs = []
        handles = [post.register_forward_pre_hook(lambda mod, args: clean_inputs.append(args[0][0, -1].detach()))
                   for post in posts if post is not None]
        with torch.no_grad():
            model(prompt)
        for h in handles:
            h.remove()
        for layer, down in enumerate(downs):
            for alpha, weight in zip(alphas, weights):
                s = torch.full((down.in_features,), float(alpha), requires_grad=True)

                def scale_m(mod, args):
                    m = args[0]
                    return (torch.cat([m[:, :-1], m[:, -1:] * s], 1),)

                def freeze(mod, args, result):
                    x = args[0][0, -1].float()
                    inv_rms = torch.rsqrt(clean_inputs[layer].float().pow(2).mean() + mod.eps)
                    last = (x * inv_rms * (1.0 + mod.weight.float())).to(result.dtype)
                    return torch.cat([result[:, :-1], last[None, None]], 1)

                handles = [down.register_forward_pre_hook(scale_m)]
                if frozen_norm and posts and posts[layer] is not None:
                    handles.append(posts[layer].register_forward_hook(freeze))
                try:
                    p = torch.softmax(model(prompt).logits[0, -1].double(), -1)[int(target)]
                    p.backward()
                finally:
                    for h in handles:
                        h.remove()
                out[b, layer] += weight * s.grad.double().numpy()
    return out


@pytest.mark.parametrize("rule", ["left", "gauss_legendre"])
def test_fast_ig_equals_naive_recomputation(lm, rule):
    ids, mask = _prompts(lm)
    targets = np.array([5, 17])
    fast = integrated_gradients(lm, ids, targets, mask, steps=3, rule=rule, chunk_size=4, path="knowledge_neurons")
    expected = naive_ig(lm, ids, mask, targets, *quadrature(rule, 3))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(fast.attributions, expected, atol=1e-5 * max(scale, 1e-3), rtol=0)


@pytest.mark.parametrize("path", PATHS)
def test_fast_ig_equals_pytorch_recomputation(pair, path):
    """Both paths against an independent PyTorch computation (the frozen norm written as a hook)."""
    lm, model = pair
    ids, mask = _prompts(lm)
    targets = np.array([5, 17])
    fast = integrated_gradients(lm, ids, targets, mask, steps=3, rule="gauss_legendre", chunk_size=4, path=path)
    expected = torch_ig(model, ids, mask, targets, *quadrature("gauss_legendre", 3), path == "frozen_norm")
    scale = np.abs(expected).max()
    np.testing.assert_allclose(fast.attributions, expected, atol=1e-4 * max(scale, 1e-3), rtol=0)


@pytest.fixture(scope="module", params=sorted(hf_reference.VARIANTS))
def any_family(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    hf_reference.make_model(request.param).save_pretrained(directory)
    return jn.load_model(str(directory))


def test_completeness_on_every_family(any_family):
    """Default path, 20 left-Riemann steps: per layer, sum of IG = P(x) - P(m zeroed) within 5%, and the end
    point is the real one (a full forward with m zeroed at the last token)."""
    lm = any_family
    ids, mask = _prompts(lm)
    targets = np.array([5, 17])
    r = integrated_gradients(lm, ids, targets, mask, steps=20)
    left_ids, left_mask = left_padded(ids, mask)
    for layer in range(lm.config.num_layers):
        scale = np.ones((2, lm.config.num_layers, lm.config.neurons_per_layer), np.float32)
        scale[:, layer] = 0
        where = np.zeros(left_ids.shape, bool)
        where[:, -1] = True
        zeroed = jn.Intervention(jnp.asarray(scale), jnp.zeros_like(scale), jnp.asarray(where))
        probs = jax.nn.softmax(lm.logits(left_ids, left_mask, zeroed)[:, -1], -1)
        np.testing.assert_allclose(r.zeroed_prob[:, layer], np.asarray(probs)[[0, 1], targets], rtol=1e-4, atol=1e-7)
    error = completeness_error(r)
    checked = _routing_unchanged(lm, left_ids, left_mask, quadrature("left", 20)[0]) if lm.config.num_experts \
        else np.ones(error.shape, bool)
    assert error.shape == (2, lm.config.num_layers) and (error[checked] < 0.05).all(), (error, checked)
    if lm.config.sandwich_norms:  # the Knowledge-Neurons path fails it here: the check can fail
        kn = integrated_gradients(lm, ids, targets, mask, steps=20, path="knowledge_neurons")
        assert (completeness_error(kn) > 1).any()


def _routing_unchanged(lm, left_ids, left_mask, alphas):
    """[B, L]: whether no router above layer l changes its choice at the last token when that layer's m there is
    scaled by any of alphas or 1. Where one does, P jumps along the path and IG, a sum of gradients, misses the
    jump: completeness holds in a mixture of experts only up to such switches (always in the last layer)."""
    where = np.zeros(left_ids.shape, bool)
    where[:, -1] = True
    shape = (len(left_ids), lm.config.num_layers, lm.config.neurons_per_layer)
    same = np.ones(shape[:2], bool)
    for layer in range(lm.config.num_layers):
        picks = []
        for alpha in [*alphas, 1.0]:
            scale = np.ones(shape, np.float32)
            scale[:, layer] = alpha
            scaled = jn.Intervention(jnp.asarray(scale), jnp.zeros_like(scale), jnp.asarray(where))
            out = lm.forward(left_ids, left_mask, record=jn.Record(("router_weights",), "last"), intervention=scaled)
            picks.append(np.asarray(out.activations["router_weights"])[:, layer + 1:] > 0)
        same[:, layer] = np.all([(p == picks[-1]).all(axis=(1, 2)) for p in picks], axis=0)
    assert same[:, -1].all()
    return same


def test_completeness_error_definition():
    attributions = np.zeros((1, 3, 2))
    attributions[0, 0] = [0.1, 0.05]  # sums to 0.15 against a change of 0.2: 25%
    attributions[0, 1] = [0.001, 0.0]  # a change of 0 judged against 1% of P(x) = 0.005: 20%
    r = IGResult(attributions, np.array([0.5]), np.array([[0.3, 0.5, np.nan]]), np.zeros((1, 3, 2)), (0, 1))
    np.testing.assert_allclose(completeness_error(r), [[0.25, 0.2, np.nan]])


def test_replay_plan_is_cheap_and_covers_the_targets():
    for num_layers, layers in [(30, range(30)), (30, (7, 14, 21, 28)), (18, range(18)), (3, (2, 0, 1)),
                               (30, (0, 26, 27, 28, 29)), (32, range(0, 32, 3)), (5, (4,))]:
        plan = replay_plan(num_layers, layers)
        assert sorted(l for _, group in plan for l in group) == sorted(set(layers))
        assert all(start == min(group) for start, group in plan)
        cost = sum((num_layers - start) * len(group) for start, group in plan)
        minimum = sum(num_layers - l for l in set(layers))
        assert cost <= 1.25 * minimum
        # the fewest groups that reach it: brute force over every split of the sorted targets in one group fewer
        targets = sorted(set(layers))
        if 1 < len(plan) <= 4 and len(targets) <= 12:
            import itertools
            for cuts in itertools.combinations(range(1, len(targets)), len(plan) - 2):
                bounds = (0, *cuts, len(targets))
                fewer = sum((num_layers - targets[i]) * (j - i) for i, j in zip(bounds, bounds[1:]))
                assert fewer > 1.25 * minimum
    assert replay_plan(30, range(30)) == replay_plan(30, reversed(range(30)))
    with pytest.raises(ValueError, match="layers"):
        replay_plan(4, [4])


def test_ig_padding_side_and_layer_subset(lm):
    targets = np.array([5, 17])
    right = integrated_gradients(lm, *_prompts(lm, "right")[:1], targets, _prompts(lm, "right")[1], steps=2)
    left = integrated_gradients(lm, _prompts(lm, "left")[0], targets, _prompts(lm, "left")[1], steps=2, layers=[1])
    np.testing.assert_allclose(left.attributions[:, 1], right.attributions[:, 1], atol=1e-7)
    assert not left.attributions[:, 0].any()


def test_completeness_improves_with_steps(lm):
    """sum_j IG(l, j) -> P(x) - P(layer l zeroed) as the left Riemann sum refines (first order: 8x steps, about
    8x smaller error); default path."""
    ids, mask = _prompts(lm)
    targets = np.array([5, 17])
    errors = []
    for steps in (4, 32):
        r = integrated_gradients(lm, ids, targets, mask, steps=steps, rule="left")
        gap = r.target_prob[:, None] - r.zeroed_prob
        errors.append(np.abs(r.attributions.sum(-1) - gap).max())
    assert errors[1] < 0.25 * errors[0] + 1e-7


def test_static_scores_match_formulas(lm):
    ids, mask = _prompts(lm)
    m = np.asarray(lm.neurons(ids, mask, quantity="ffn_hidden"))  # [B, L, F]
    targets = np.array([5, 17])
    scores = static_scores(lm.config, lm.params, m, targets)
    down = np.asarray(lm.params["layers"]["mlp"]["down"]["kernel"])  # [L, F, H]
    unembed = np.asarray(lm.params["embed"]["embedding"]) if lm.config.tie_embeddings \
        else np.asarray(lm.params["lm_head"]["kernel"]).T
    for b in range(2):
        for layer in range(lm.config.num_layers):
            for j in range(0, lm.config.neurons_per_layer, 7):
                v = down[layer, j]
                assert np.isclose(scores["contribution"][b, layer, j], abs(m[b, layer, j]) * np.sqrt((v ** 2).sum()),
                                  rtol=1e-5, atol=1e-7)
                assert np.isclose(scores["effective"][b, layer, j], m[b, layer, j] * unembed[targets[b]] @ v,
                                  rtol=1e-4, atol=1e-7)


def test_identity_intervention_changes_nothing(lm):
    ids, mask = _prompts(lm)
    where = jnp.asarray(mask.astype(bool))
    keep = jn.Intervention.identity(lm.config, where)
    np.testing.assert_array_equal(np.asarray(lm.logits(ids, mask, keep)), np.asarray(lm.logits(ids, mask)))


def test_zeroing_a_layer_equals_removing_its_ffn(lm):
    ids, mask = _prompts(lm)
    layer = 1
    scale = np.ones((2, lm.config.num_layers, lm.config.neurons_per_layer), np.float32)
    scale[:, layer] = 0
    zeroed = jn.Intervention(jnp.asarray(scale), jnp.zeros_like(scale), jnp.ones(ids.shape, bool))
    params = jax.tree.map(lambda x: x, lm.params)
    mlp = jax.tree.map(np.array, params["layers"]["mlp"])
    mlp["down"]["kernel"][layer] = 0  # the FFN's output is then exactly its down-projection bias
    params["layers"]["mlp"] = mlp
    removed = jn.LanguageModel(lm.config, params, None, lm.compute_dtype)
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(lm.logits(ids, mask, zeroed))[real],
                               np.asarray(removed.logits(ids, mask))[real], atol=1e-5)


def test_attribution_by_category_matches_numpy():
    from jaxneurons.attribution.by_category import attribution_statistics, scaled_top_k

    rng = np.random.default_rng(3)
    scores = rng.normal(size=(2, 3, 4, 12)).astype(np.float32)
    codes = rng.integers(0, 3, size=(2, 4, 12))  # category 3 left empty on purpose
    got = {k: np.asarray(v) for k, v in attribution_statistics(scores, codes, 5).items()}
    for b in range(2):
        for n in range(3):
            positive = np.zeros(4)
            for layer in range(4):
                s, c = scores[b, n, layer], codes[b, layer]
                top = np.argsort(-s)[:5]
                np.testing.assert_array_equal(got["top_counts"][b, n, layer], np.bincount(c[top], minlength=4))
                for cat in range(4):
                    members = s[c == cat]
                    assert np.isclose(got["sum"][b, n, layer, cat], members.sum(), atol=1e-5)
                    if members.size:
                        assert np.isclose(got["max"][b, n, layer, cat], members.max())
                        assert np.isclose(got["min"][b, n, layer, cat], members.min())
                        assert np.isclose(got["mean"][b, n, layer, cat], members.mean(), atol=1e-6)
                    else:
                        assert np.isnan(got["max"][b, n, layer, cat]) and np.isnan(got["mean"][b, n, layer, cat])
                    positive[cat] += np.clip(members, 0, None).sum()
            np.testing.assert_allclose(got["positive"][b, n], positive, atol=1e-5)
    assert scaled_top_k(16384) == 800 and scaled_top_k(1536) == 75 and scaled_top_k(1536, 10) == 10
