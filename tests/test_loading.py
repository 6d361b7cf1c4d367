"""Loading: full-size configs checked without weights, and each bad input gives a clear error."""

import json
import os

import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.loading.convert import CheckpointError, _targets, expected_shapes
from jaxneurons.models.config import UnsupportedConfigError, from_hf_config

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

FULL_SIZE = {
    "llama2_7b": ("LlamaConfig", dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                                      num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32)),
    "llama3_8b": ("LlamaConfig", dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                                      num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                                      rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                                                           low_freq_factor=1.0, high_freq_factor=4.0,
                                                           original_max_position_embeddings=8192))),
    "qwen2.5_7b": ("Qwen2Config", dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                                       num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4)),
    "bloom_7b1": ("BloomConfig", dict(vocab_size=250880, hidden_size=4096, n_layer=30, n_head=32)),
    "mixtral_8x7b": ("MixtralConfig", dict()),  # the class defaults are Mixtral-8x7B's
    "qwen3_30b_a3b": ("Qwen3MoeConfig", dict(vocab_size=151936, hidden_size=2048, num_hidden_layers=48,
                                             num_attention_heads=32, num_key_value_heads=4, head_dim=128,
                                             moe_intermediate_size=768, num_experts=128, num_experts_per_tok=8,
                                             norm_topk_prob=True)),
    "gemma3_1b": ("Gemma3TextConfig", dict(vocab_size=262144, hidden_size=1152, intermediate_size=6912,
                                           num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1,
                                           head_dim=256, query_pre_attn_scalar=256, sliding_window=512)),
    "phi3_mini_4k": ("Phi3Config", dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192,
                                        num_hidden_layers=32, num_attention_heads=32, sliding_window=2047)),
    "command_r_plus": ("CohereConfig", dict(vocab_size=256000, hidden_size=12288, intermediate_size=33792,
                                            num_hidden_layers=64, num_attention_heads=96, num_key_value_heads=8,
                                            use_qk_norm=True, logit_scale=0.8333333333333334)),
    "command_r7b": ("Cohere2Config", dict(vocab_size=256000, hidden_size=4096, intermediate_size=14336,
                                          num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                                          sliding_window=4096, logit_scale=0.25)),
    "gemma2_2b": ("Gemma2Config", dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                                       num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                                       head_dim=256)),
}


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_shapes_match_transformers(name):
    """Every HF tensor of the real-size model maps onto a parameter of the same shape, and none is left over."""
    config_name, kwargs = FULL_SIZE[name]
    hf_config = getattr(transformers, config_name)(**kwargs)
    config = from_hf_config(hf_config.to_dict())
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf_config)
    ours = {path: tuple(s.shape) for path, s in expected_shapes(config).items()}
    mapped: dict[str, tuple] = {}
    for hf_name, tensor in model.state_dict().items():
        if config.tie_embeddings and hf_name.endswith("lm_head.weight"):
            continue
        for path, layer, value in _targets(config, hf_name, _Shape(tensor)):
            mapped[path] = value.shape if layer is None else (config.num_layers, *value.shape)
    assert mapped == ours
    hf_count = sum(p.numel() for p in model.parameters())
    assert sum(int(np.prod(s)) for s in ours.values()) == hf_count


class _Shape:
    """Stands in for a tensor in the conversion tables: only shapes, reshapes and transposes."""

    def __init__(self, tensor):
        self.shape = tuple(tensor.shape)

    @property
    def T(self):
        return _ShapeOf(self.shape[::-1])

    def reshape(self, *shape):
        return _ShapeOf(self._view().reshape(*shape).shape)

    def transpose(self, *axes):
        return _ShapeOf(self._view().transpose(*axes).shape)

    def __getitem__(self, index):
        return _ShapeOf(self._view()[index].shape)

    def _view(self):  # an array of this shape that allocates nothing (reshape on it only to infer -1)
        return np.lib.stride_tricks.as_strided(np.zeros(1, np.int8), self.shape, (0,) * len(self.shape))

    def __array__(self, dtype=None, copy=None):  # np.asarray on a meta tensor stand-in
        return np.broadcast_to(np.zeros((), np.int8), self.shape)


class _ShapeOf(_Shape):
    def __init__(self, shape):
        self.shape = shape


def _save_tiny(tmp_path, **overrides):
    from tests.hf_reference import make_model

    model = make_model("llama_gqa_tied")
    model.save_pretrained(tmp_path, max_shard_size="40KB")
    if overrides:
        config = json.loads((tmp_path / "config.json").read_text())
        config.update(overrides)
        (tmp_path / "config.json").write_text(json.dumps(config))
    return model


def test_unsupported_config_attribute_is_named(tmp_path):
    _save_tiny(tmp_path, frobnicate_heads=3)
    with pytest.raises(UnsupportedConfigError, match="frobnicate_heads=3"):
        jn.load_model(str(tmp_path))


@pytest.mark.parametrize("hf, message", [
    (dict(model_type="gemma2", use_bidirectional_attention=True), "use_bidirectional_attention=True"),
    (dict(model_type="gemma2", layer_types=["chunked_attention"] * 2), "chunked_attention"),
    (dict(model_type="qwen2", layer_types=["sliding_attention"] * 2), "needs sliding_window"),
    (dict(model_type="qwen3", use_sliding_window=True), "use_sliding_window=True"),
])
def test_unported_attention_kinds_are_named(hf, message):
    sizes = dict(vocab_size=32, hidden_size=8, intermediate_size=12, num_hidden_layers=2, num_attention_heads=2)
    with pytest.raises(UnsupportedConfigError, match=message):
        from_hf_config({**sizes, **hf})


def test_unsupported_rope_type_is_named(tmp_path):
    _save_tiny(tmp_path, rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0})
    with pytest.raises(UnsupportedConfigError, match="yarn"):
        jn.load_model(str(tmp_path))


def test_phi3_longrope_is_refused_by_name():
    config = transformers.Phi3Config(num_hidden_layers=2, rope_parameters=dict(
        rope_type="longrope", rope_theta=10000.0, short_factor=[1.0] * 48, long_factor=[2.0] * 48,
        original_max_position_embeddings=4096)).to_dict()
    with pytest.raises(UnsupportedConfigError, match="phi3 port does not support rope_type='longrope'"):
        from_hf_config(config)


def test_phi3_and_command_r_style_config_json_load():
    """config.json dicts shaped like Phi-3-mini-4k-instruct's (remote-code auto_map, dropouts, rope_scaling null)
    and Command R's (model_max_length, use_qk_norm false) load without a refusal."""
    phi3 = dict(model_type="phi3", vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, auto_map={"AutoConfig": "configuration_phi3.Phi3Config"},
                embd_pdrop=0.0, resid_pdrop=0.0, attention_dropout=0.0, original_max_position_embeddings=4096,
                rope_scaling=None, rope_theta=10000.0, sliding_window=2047, rms_norm_eps=1e-5)
    assert from_hf_config(phi3).sliding_window == 2047
    command_r = dict(model_type="cohere", vocab_size=256000, hidden_size=8192, intermediate_size=22528,
                     num_hidden_layers=40, num_attention_heads=64, num_key_value_heads=64, logit_scale=0.0625,
                     model_max_length=131072, rope_theta=8000000.0, use_qk_norm=False, layer_norm_eps=1e-5)
    config = from_hf_config(command_r)
    assert (config.logit_scale, config.rope.theta, config.tie_embeddings) == (0.0625, 8000000.0, True)


def test_cohere_keys_that_transformers_ignores_are_accepted_only_at_its_values():
    legacy = dict(num_hidden_layers=4, use_parallel_block=True, rotary_pct=1.0, position_embedding_type="rope_gptj",
                  use_gated_activation=True, use_embedding_sharing=True, model_max_length=131072)
    assert from_hf_config(transformers.Cohere2Config(**legacy).to_dict()).parallel_block
    with pytest.raises(UnsupportedConfigError, match="rotary_pct=0.5"):
        from_hf_config(transformers.Cohere2Config(**{**legacy, "rotary_pct": 0.5}).to_dict())
    with pytest.raises(UnsupportedConfigError, match="use_qk_norm=True"):
        from_hf_config(transformers.Cohere2Config(**legacy, use_qk_norm=True).to_dict())


def test_missing_shard_is_named(tmp_path):
    _save_tiny(tmp_path)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    victim = sorted(set(index["weight_map"].values()))[1]
    os.remove(tmp_path / victim)
    with pytest.raises(CheckpointError, match=victim):
        jn.load_model(str(tmp_path))


def test_truncated_safetensors_is_named(tmp_path):
    _save_tiny(tmp_path)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    victim = tmp_path / sorted(set(index["weight_map"].values()))[0]
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        jn.load_model(str(tmp_path))


def test_pickle_needs_opt_in(tmp_path):
    from tests.hf_reference import make_model

    model = make_model("llama_gqa_tied")
    model.save_pretrained(tmp_path, safe_serialization=False)
    if not (tmp_path / "pytorch_model.bin").exists():
        torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
        for f in tmp_path.glob("*.safetensors"):
            f.unlink()
    with pytest.raises(CheckpointError, match="allow_pickle"):
        jn.load_model(str(tmp_path))
    with pytest.raises(CheckpointError, match="pickle"):
        jn.load_model(str(tmp_path / "pytorch_model.bin"))
    lm = jn.load_model(str(tmp_path), allow_pickle=True)
    ids = np.array([[3, 5, 7]])
    with torch.no_grad():
        ref = model(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(lm.logits(ids)), ref, atol=1e-4)


def test_bad_pickle_paths_end_with_one_line(tmp_path):
    """A corrupt pickle and a path to the .bin file itself: one CheckpointError line each, naming what to do."""
    from tests.hf_reference import make_model

    model = make_model("llama_gqa_tied")
    model.config.to_json_file(tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin could not be read as a PyTorch checkpoint \(.*\); "
                                              r"the file may be truncated or corrupt") as corrupt:
        jn.load_model(str(tmp_path), allow_pickle=True)
    weights_file = str(tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"is a file, not a model: pass the checkpoint folder") as a_file:
        jn.load_model(weights_file, allow_pickle=True)
    with pytest.raises(CheckpointError, match=r"is a file, not a model") as config_of_a_file:
        jn.loading.read_model_config(weights_file)
    for error in (corrupt, a_file, config_of_a_file):
        assert "\n" not in str(error.value)
    torch.save([1, 2], tmp_path / "pytorch_model.bin")  # a pickle, but no state dict
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        jn.load_model(str(tmp_path), allow_pickle=True)


def test_max_context_is_read_without_the_weights(tmp_path):
    _save_tiny(tmp_path, max_position_embeddings=77)
    assert jn.loading.read_max_context(str(tmp_path)) == 77
    config = json.loads((tmp_path / "config.json").read_text())
    del config["max_position_embeddings"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert jn.loading.read_max_context(str(tmp_path)) is None


def test_gguf_tokenizer_cache_folders_are_not_private(tmp_path, monkeypatch):
    """The cached tokenizer folder gets the mode of any folder (0755 under umask 022), not mkdtemp's 0700."""
    import stat

    from jaxneurons.loading import gguf_tokenizer

    class Saver:
        def save_pretrained(self, directory):
            with open(os.path.join(directory, "tokenizer.json"), "w") as f:
                f.write("{}")

    previous = os.umask(0o022)
    try:
        gguf_tokenizer._save(Saver(), str(tmp_path / "tokenizers" / "model-0123"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "tokenizers" / "model-0123").st_mode) == 0o755
    assert os.listdir(tmp_path / "tokenizers") == ["model-0123"]


def test_sharded_pickles_load_with_opt_in(tmp_path):
    """pytorch_model-0000k-of-0000n.bin shards named by pytorch_model.bin.index.json, as older checkpoints ship."""
    from tests.hf_reference import make_model

    model = make_model("llama_gqa_tied")
    state = model.state_dict()
    names = sorted(state)
    shards = {f"pytorch_model-0000{k + 1}-of-00002.bin": names[k::2] for k in range(2)}
    for file, keys in shards.items():
        torch.save({k: state[k] for k in keys}, tmp_path / file)
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model.config.to_json_file(tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="allow_pickle"):
        jn.load_model(str(tmp_path))
    lm = jn.load_model(str(tmp_path), allow_pickle=True)
    ids = np.array([[3, 5, 7]])
    with torch.no_grad():
        ref = model(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(lm.logits(ids)), ref, atol=1e-4)


def test_missing_tensor_is_named(tmp_path):
    from safetensors.numpy import load_file, save_file

    _save_tiny(tmp_path)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    name, shard = next((n, s) for n, s in index["weight_map"].items() if "layers.1.mlp.up_proj" in n)
    tensors = load_file(tmp_path / shard)
    del tensors[name]
    save_file(tensors, tmp_path / shard)
    with pytest.raises(CheckpointError, match=r"layers/mlp/up/kernel \(layers \[1\]\)"):
        jn.load_model(str(tmp_path))


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        jn.load_model(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="zoo"):
        jn.load_model("no-such-model")


def test_missing_size_attribute_is_named(tmp_path):
    """A config.json without a size must not silently take the transformers class default."""
    _save_tiny(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["intermediate_size"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedConfigError, match="lacks the attribute 'intermediate_size'"):
        jn.load_model(str(tmp_path))


def test_tokenizer_from_another_source(tmp_path):
    """A checkpoint without tokenizer files has none (encode says so); tokenizer= takes one from elsewhere."""
    from jaxneurons.loading import zoo

    _save_tiny(tmp_path)
    lm = jn.load_model(str(tmp_path))
    assert lm.tokenizer is None
    with pytest.raises(ValueError, match="no tokenizer"):
        lm.encode(["hello"])
    try:
        zoo.resolve_zoo("smollm2-135m")
    except (ModuleNotFoundError, FileNotFoundError) as e:
        pytest.skip(str(e))
    lm = jn.load_model(str(tmp_path), tokenizer="smollm2-135m")
    assert lm.encode(["hello"])[0].shape[0] == 1
