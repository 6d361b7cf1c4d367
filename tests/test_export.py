"""Export to a Hugging Face checkpoint: transformers loads it and computes jaxneurons' logits, for every family."""

import dataclasses
import json
import os

import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.loading.export import export_hf, to_hf_config
from jaxneurons.models.config import UnsupportedConfigError, from_hf_config

hf_reference = pytest.importorskip("tests.hf_reference")
torch = hf_reference.torch
transformers = hf_reference.transformers


def _transformers_logits(directory, ids, mask):
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    model.config._attn_implementation = "eager"
    kwargs = {} if model.config.model_type == "bloom" else {
        "position_ids": (torch.tensor(mask).cumsum(-1) - 1).clamp(min=0)}
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask), **kwargs
                     ).logits.numpy()


@pytest.mark.parametrize("variant", sorted(hf_reference.VARIANTS))
def test_exported_checkpoint_loads_in_transformers_with_the_same_logits(variant, tmp_path):
    source = hf_reference.make_model(variant)
    source.save_pretrained(tmp_path / "source")
    lm = jn.load_model(str(tmp_path / "source"))
    # Perturb the weights so the export cannot pass by copying the source files: the exported model must
    # compute what jaxneurons computes with *these* params.
    lm.params = jax_tree_scale(lm.params, 1.05)
    export_hf(lm, str(tmp_path / "exported"))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, lm.config.vocab_size, size=(2, 9)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, :3] = 0  # left padding in the second row
    ours = np.asarray(lm.logits(ids, mask))
    theirs = _transformers_logits(str(tmp_path / "exported"), ids, mask)
    real = mask.astype(bool)
    np.testing.assert_allclose(theirs[real], ours[real], atol=1e-4, rtol=0, err_msg=variant)
    assert not np.allclose(theirs[real], hf_reference.reference(source, ids, mask)[0][real], atol=1e-3)


def jax_tree_scale(params, factor):
    import jax

    return jax.tree.map(lambda x: x * factor, params)


@pytest.mark.parametrize("variant", sorted(hf_reference.VARIANTS))
def test_config_round_trips(variant):
    config = hf_reference.make_model(variant).config.to_dict()
    ours = from_hf_config(config)
    assert from_hf_config(json.loads(json.dumps(to_hf_config(ours)))) == ours


@pytest.mark.parametrize("field, value", [("sandwich_norms", True), ("norm", "layer"), ("embedding_multiplier", 2.0),
                                          ("gated_mlp", False), ("parallel_block", True), ("logit_scale", 2.0),
                                          ("rope_interleaved", True)])
def test_what_transformers_cannot_represent_is_refused(field, value):
    config = from_hf_config(hf_reference.make_model("llama_gqa_tied").config.to_dict())
    with pytest.raises(UnsupportedConfigError, match=field):
        to_hf_config(dataclasses.replace(config, **{field: value}))


def test_gguf_zoo_model_exports_with_its_tokenizer(tmp_path, zoo_lm):
    lm = zoo_lm("smollm2-135m")
    export_hf(lm, str(tmp_path))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    ids, mask = lm.encode(["The capital of France is"])
    assert tokenizer("The capital of France is")["input_ids"] == ids[0].tolist()
    ours = np.asarray(lm.logits(ids, mask))[0, -1]
    theirs = _transformers_logits(str(tmp_path), ids, mask)[0, -1]
    np.testing.assert_allclose(theirs, ours, atol=1e-4 * np.abs(ours).max())


def test_export_refuses_a_non_empty_folder_unless_asked_to_replace_an_export(tmp_path):
    from tests.test_pipeline import tiny_lm

    lm, target = tiny_lm(), tmp_path / "exported"
    export_hf(lm, str(target))
    first = (target / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match=r"is not empty \(config\.json, .*\): export into a new or empty folder, "
                                              r"or pass overwrite=True to replace this earlier export"):
        export_hf(tiny_lm(seed=1), str(target))
    assert (target / "model.safetensors").read_bytes() == first  # nothing written
    (target / "stale.txt").write_text("from the earlier export")
    export_hf(tiny_lm(seed=1), str(target), overwrite=True)
    assert (target / "model.safetensors").read_bytes() != first and not (target / "stale.txt").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("mine")
    with pytest.raises(FileExistsError, match="holds files but no export"):
        export_hf(lm, str(tmp_path / "mine"), overwrite=True)
    assert os.listdir(tmp_path / "mine") == ["thesis.tex"]
