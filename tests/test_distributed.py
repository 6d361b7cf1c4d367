"""Several devices (a data x fsdp mesh) and several processes give the results of one device, one process.

Simulated CPU devices need XLA_FLAGS before jax is imported, and jax.distributed one process per process:
both run in subprocesses (this file run as a script), compared here with an in-process one-device run.
"""

import json
import os
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LANGS = ["en", "de", "ru"]
THRESHOLDS = (0.0, 0.1, 0.5)
NUM_EXAMPLES = 11  # 2 batches of 8: the last one padded, on any process count
BATCH_SIZE = 8


def analyse(out: str, **kwargs) -> dict:
    """The tiny model of test_pipeline on builtin_nli, written to out."""
    sys.path.insert(0, REPO)
    from jaxneurons.pipeline import SharingConfig, run_sharing_analysis
    from jaxneurons.tasks import get_task
    from tests.fixtures import split_config, tiny_lm

    task = get_task("builtin_nli")
    examples = task.load(LANGS, num_examples=NUM_EXAMPLES, prompt_format="paper").examples
    kwargs = {"batch_size": BATCH_SIZE, "thresholds": THRESHOLDS, "progress": False, "figures": False, **kwargs}
    config, rest = split_config(SharingConfig, kwargs)
    return run_sharing_analysis(tiny_lm(), task, examples, LANGS, out, config, **rest)


def deactivate(out: str, batch_size: int = 3, **kwargs) -> dict:
    """The deactivation pass of the same model and examples (4 batches of 3), written to out."""
    sys.path.insert(0, REPO)
    from jaxneurons.pipeline.interventions import InterventionsConfig, run_interventions
    from jaxneurons.tasks import get_task
    from tests.fixtures import tiny_lm

    task = get_task("builtin_nli")
    examples = task.load(LANGS, num_examples=NUM_EXAMPLES, prompt_format="paper").examples
    config = InterventionsConfig(kinds=["all_shared", "random"], batch_size=batch_size, seeds=1, bootstrap=20)
    return run_interventions(tiny_lm(), task, examples, LANGS, out, config, progress=False, figures=False, **kwargs)


def attribute(out: str, batch_size: int = 3, ig: bool = False, **kwargs) -> dict:
    """The attribution pass (contribution scores, and IG with 2 steps) of the same model and examples (4 batches
    of 3), written to out."""
    sys.path.insert(0, REPO)
    from jaxneurons.pipeline.attribution import AttributionConfig, run_attribution_analysis
    from jaxneurons.tasks import get_task
    from tests.fixtures import tiny_lm

    task = get_task("builtin_nli")
    examples = task.load(LANGS, num_examples=NUM_EXAMPLES, prompt_format="paper").examples
    config = AttributionConfig(methods=("contribution", "ig") if ig else ("contribution",), top_k=4,
                               batch_size=batch_size, ig_steps=2, seeds=1, bootstrap=20)
    return run_attribution_analysis(tiny_lm(), task, examples, LANGS, out, config, progress=False, figures=False,
                                    **kwargs)


@pytest.mark.parametrize("family", ["llama", "qwen3", "gemma3", "bloom", "cohere", "mixtral"])
def test_every_matrix_has_a_sharded_axis_of_the_right_kind(family):
    """FSDP_AXIS names every parameter matrix of every family, at an axis of hidden or neuron size."""
    from jaxneurons.distributed import FSDP_AXIS, param_spec
    from jaxneurons.loading.convert import expected_shapes
    from jaxneurons.models.config import ModelConfig

    extra = dict(norm="layer", gated_mlp=False, qkv_bias=True, out_bias=True, mlp_bias=True, embedding_norm=True,
                 position="alibi") if family == "bloom" else dict(qk_norm=family != "llama",
                                                                  sandwich_norms=family == "gemma3")
    if family == "cohere":  # one norm per layer (no mlp_norm), per-head q/k norm weights [heads, head_dim]
        extra.update(norm="layer_nobias", parallel_block=True, qk_norm_per_head=True)
    if family == "mixtral":  # a mixture of 4 experts of 12 neurons: neuron axes of 48
        extra.update(num_experts=4, experts_per_token=2)
    config = ModelConfig(family=family, vocab_size=50, hidden_size=8, intermediate_size=12, num_layers=3,
                         num_heads=2, num_kv_heads=1, head_dim=6, **extra)
    for path, leaf in expected_shapes(config).items():
        per_layer = leaf.shape[1:] if path.startswith("layers/") else leaf.shape
        if len(per_layer) < 2 or path.endswith("norm/scale"):
            assert path not in FSDP_AXIS and tuple(param_spec(path, leaf.shape, 2)) == (), path  # norms, biases
            continue
        size = leaf.shape[FSDP_AXIS[path]]
        neurons = "/mlp/" in path and "router" not in path
        assert size == (config.neurons_per_layer if neurons else config.hidden_size), path
        assert tuple(param_spec(path, leaf.shape, 2 if size % 2 == 0 else 3)).count("fsdp") == 1, path


def test_layouts_of_a_70b_model():
    """benchmarks/layouts.py counts LLaMA-2-70B's 68,976,648,192 parameters (its published size) and splits all but
    the norms over fsdp; v5e chips need fsdp:16, v4 chips fsdp:8."""
    from benchmarks.layouts import LLAMA2_70B, MACHINES, layout_rows, weight_bytes

    norms = (2 * 80 + 1) * 8192
    assert weight_bytes(LLAMA2_70B, itemsize=1) == 68_976_648_192
    assert weight_bytes(LLAMA2_70B, 16, itemsize=1) == (68_976_648_192 - norms) // 16 + norms
    fsdp = {row["machine"]: row["fsdp"] for row in layout_rows(LLAMA2_70B, MACHINES)}
    assert fsdp == {"TPU v4-32": 8, "TPU v5e-16": 16, "2 x 8 H100 80GB": 4}


def run_script(*args: str, devices: int = 1, timeout: int = 240) -> subprocess.Popen:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: int = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def numbers(tree, prefix=""):
    """{json path: number} of every numeric leaf (timing aside, and the bins' layout: a mesh rounds their count
    up to a multiple of its data axis, which changes the padding but no result)."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() if key not in ("examples_per_second", "packing", "padding_ratio")
                for k, v in numbers(value, f"{prefix}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, value in enumerate(tree) for k, v in numbers(value, f"{prefix}/{i}").items()}
    return {prefix: tree} if isinstance(tree, (int, float)) and not isinstance(tree, bool) else {}


def load(out: str) -> tuple[dict, dict]:
    with open(os.path.join(out, "sharing.json")) as f:
        sharing = json.load(f)
    with np.load(os.path.join(out, "examples.npz")) as data:
        return sharing, {k: data[k] for k in data.files}


def assert_same(reference: str, other: str) -> None:
    (ref_sharing, ref_arrays), (sharing, arrays) = load(reference), load(other)
    ref_numbers, got = numbers(ref_sharing), numbers(sharing)
    assert ref_numbers.keys() == got.keys()
    for key, value in ref_numbers.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6, nan_ok=True), key
    assert ref_arrays.keys() == arrays.keys()
    for key, value in ref_arrays.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(arrays[key], value, rtol=1e-5, atol=1e-5, err_msg=key)
        else:
            np.testing.assert_array_equal(arrays[key], value, err_msg=key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("one_device"))
    analyse(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- tests


def generate(out: str, batch_size: int = 3, **kwargs) -> None:
    """Greedy and sampled generation of five prompts under an intervention, token ids saved to out."""
    import jaxneurons as jn
    from tests.fixtures import tiny_lm

    lm = tiny_lm()
    prompts = ["the cat", "a dog ran", "x", "one two three four", "it"]
    off = jn.Intervention.zero(lm, {0: [1, 2], 1: [5]})
    greedy = lm.generate(prompts, max_new_tokens=5, intervention=off, batch_size=batch_size, **kwargs)
    sampled = lm.generate(prompts, max_new_tokens=5, temperature=1.0, seed=2, batch_size=batch_size, **kwargs)
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "generated.npy"), np.stack([greedy.token_ids, sampled.token_ids]))


def test_mesh_spec():
    from jaxneurons.distributed import LayoutError, make_mesh, parse_mesh_spec, round_batch_size

    assert parse_mesh_spec("data:-1,fsdp:1") == {"data": -1, "fsdp": 1}
    assert parse_mesh_spec("fsdp:2") == {"data": 1, "fsdp": 2}
    for bad in ("data", "model:2", "data:-1,fsdp:-1", "data:0", "data:x", "data:1,data:1"):
        with pytest.raises(LayoutError):
            parse_mesh_spec(bad)
    mesh = make_mesh("data:-1")
    assert mesh.axis_names == ("data", "fsdp") and mesh.shape["fsdp"] == 1
    with pytest.raises(LayoutError):
        make_mesh("data:3")
    assert round_batch_size(5, None) == 5


def test_meshes_match_one_device(reference, tmp_path):
    """data:4,fsdp:2 over 8 simulated devices (examples split over data, params over fsdp): the sharing numbers
    of one device (batch 6 rounds up to 8). The deactivation and attribution passes (batch 3 rounds up to 4, IG
    too): the numbers of one device with batches of 4; so are generation's tokens (greedy and sampled)."""
    finish(run_script("meshes", str(tmp_path), devices=8), timeout=600)
    assert_same(reference, str(tmp_path / "data4_fsdp2"))
    with open(tmp_path / "data4_fsdp2" / "sharing.json") as f:
        assert json.load(f)["batch_size"] == BATCH_SIZE
    deactivate(str(tmp_path / "one"), batch_size=4)
    generate(str(tmp_path / "one"), batch_size=4)
    np.testing.assert_array_equal(np.load(tmp_path / "data4_fsdp2" / "generated.npy"),
                                  np.load(tmp_path / "one" / "generated.npy"))
    attribute(str(tmp_path / "one"), batch_size=4, ig=True)
    for name in ("interventions.json", "attribution.json"):
        got = numbers(json.loads((tmp_path / "data4_fsdp2" / name).read_text()))
        want = numbers(json.loads((tmp_path / "one" / name).read_text()))
        assert got.keys() == want.keys(), name
        for key, value in want.items():
            if "/completeness/" in key:  # IG's error ratios are float32 rounding (about 1e-5) on any layout
                continue
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-5, nan_ok=True), (name, key)


def test_two_processes_match_one(reference, tmp_path):
    """jax.distributed with two CPU processes on localhost (collectives merge), and two processes given
    only --num_processes/--process_id (files merge): the results of one process (sharing, deactivation and
    attribution), written by process 0."""
    port = str(free_port())
    procs = [run_script("process", str(tmp_path / "jax"), str(k), port) for k in range(2)]
    procs += [run_script("process", str(tmp_path / "files"), str(k)) for k in range(2)]
    for proc in procs:
        finish(proc)
    deactivate(str(tmp_path / "one"))
    attribute(str(tmp_path / "one"))
    one = {name: json.loads((tmp_path / "one" / name).read_text()) for name in ("interventions.json",
                                                                                  "attribution.json")}
    for name in ("jax", "files"):
        assert_same(reference, str(tmp_path / name))
        assert os.path.exists(tmp_path / name / "process_1_of_2" / "state.npz")
        for result in one:  # deactivation and attribution: split, merged, identical
            assert json.loads((tmp_path / name / result).read_text()) == one[result], (name, result)


def test_weights_split_across_two_processes(reference, tmp_path):
    """One mesh over the 8 devices of two jax.distributed processes (4 simulated CPU devices each): on fsdp:8 each
    process holds half of every split weight; the logits and neurons on fsdp:8 and on data:2,fsdp:4 (rows split
    across the processes), and the sharing pass on fsdp:8 (every process runs every batch, process 0 writes), are
    those of one device. A mesh larger than the job, and generation on such a mesh, are refused."""
    port = str(free_port())
    for proc in [run_script("global", str(tmp_path), str(k), port, devices=4) for k in range(2)]:
        finish(proc)
    from jaxneurons.models.decoder import Record
    from tests.fixtures import tiny_lm

    lm = tiny_lm()
    ids, mask = lm.encode(PROMPTS)
    out = lm.forward(ids, mask, record=Record(("act",), "last"))
    for k in range(2):
        facts = json.loads((tmp_path / f"process_{k}.json").read_text())
        assert len(facts["held"]) == 8 and set(facts["held"].values()) == {0.5}, facts["held"]  # each: half
        assert facts["held_loaded"] == facts["held"]
        assert "needs 16 devices, the 2 processes have 8" in facts["too_large"]
        assert facts["refused"].startswith("generation does not run on a mesh across processes")
    for name in ("fsdp8", "data2_fsdp4"):
        with np.load(tmp_path / f"{name}.npz") as got:
            np.testing.assert_allclose(got["logits"], out.logits, rtol=1e-4, atol=1e-4, err_msg=name)  # sum order
            np.testing.assert_allclose(got["act"], out.activations["act"], rtol=1e-5, atol=1e-5, err_msg=name)
    assert_same(reference, str(tmp_path / "sharing"))
    assert not os.path.exists(tmp_path / "sharing" / "process_1_of_2" / "sharing.json")  # process 0 writes


def test_global_mesh_needs_jax_distributed(monkeypatch):
    """Processes that merge through files (no jax.distributed) cannot share a mesh: a LayoutError that says so."""
    from jaxneurons import distributed

    monkeypatch.setattr(distributed, "_process_layout", (0, 2))
    with pytest.raises(distributed.LayoutError, match="needs jax.distributed"):
        distributed.make_mesh("data:-1", across_processes=True)


def in_two_threads(out: str, **kwargs) -> list[dict]:
    """Processes 0 and 1 of 2 (file merge) as two threads of this process."""
    results = [None, None]

    def one(k):
        results[k] = analyse(out, process_index=k, process_count=2, **kwargs)

    thread = threading.Thread(target=one, args=(1,))
    thread.start()
    one(0)
    thread.join(timeout=120)
    return results


def test_file_merge_and_resume(reference, tmp_path):
    """Both processes return the merged summary; process 0 alone writes; a --resume rerun gives it again."""
    out = str(tmp_path / "threads")
    first = in_two_threads(out)
    assert first[0]["overlap"] == first[1]["overlap"] and first[0]["accuracy"] == first[1]["accuracy"]
    assert_same(reference, out)
    os.remove(os.path.join(out, "sharing.json"))
    in_two_threads(out, resume=True)
    assert_same(reference, out)


# ---------------------------------------------------------------- subprocess entry points


def main(argv: list[str]) -> None:
    sys.path.insert(0, REPO)
    if argv[0] == "meshes":
        import jax

        from jaxneurons.distributed import make_mesh

        assert jax.device_count() == 8, jax.devices()
        out = argv[1]
        analyse(os.path.join(out, "data4_fsdp2"), mesh=make_mesh("data:4,fsdp:2"), batch_size=6)
        deactivate(os.path.join(out, "data4_fsdp2"), mesh=make_mesh("data:4,fsdp:2"))
        attribute(os.path.join(out, "data4_fsdp2"), mesh=make_mesh("data:4,fsdp:2"), ig=True)
        generate(os.path.join(out, "data4_fsdp2"), mesh=make_mesh("data:4,fsdp:2"))
    elif argv[0] == "process":
        from jaxneurons import distributed

        out, k = argv[1], int(argv[2])
        if len(argv) > 3:  # jax.distributed on CPU: gloo collectives
            distributed.initialize(f"localhost:{argv[3]}", 2, k)
        else:
            distributed.initialize(num_processes=2, process_id=k)
        analyse(out)
        deactivate(out)
        attribute(out)
    elif argv[0] == "global":
        across_processes(argv[1], int(argv[2]), argv[3])


PROMPTS = ["the cat sat", "a dog", "x y z w", "it"]


def across_processes(out: str, k: int, port: str) -> None:
    """Process k of 2 (jax.distributed, 4 devices each) on meshes over all 8 devices: the half of each weight it
    holds, logits and neurons (process 0 saves them), the sharing pass, and a mesh too large for the job."""
    import dataclasses

    import jax

    from jaxneurons import distributed
    from jaxneurons.loading import _to_device
    from jaxneurons.models.decoder import Record
    from tests.fixtures import tiny_lm

    distributed.initialize(f"localhost:{port}", 2, k)
    assert jax.device_count() == 8 and jax.local_device_count() == 4, jax.devices()
    lm = tiny_lm()
    ids, mask = lm.encode(PROMPTS)
    facts = {}
    for name, spec in (("fsdp8", "fsdp:8"), ("data2_fsdp4", "data:2,fsdp:4")):
        placement = distributed.Placement(distributed.make_mesh(spec, across_processes=True))
        params = placement.params(lm.params)
        if name == "fsdp8":  # placed by the Placement, and by the loader under a default mesh (the launcher's)
            distributed.set_default_mesh(placement.mesh)
            loaded = _to_device(jax.tree.map(np.asarray, lm.params))
            distributed.set_default_mesh(None)
            facts["held"], facts["held_loaded"] = held_fraction(params), held_fraction(loaded)
        with placement.context():
            got = dataclasses.replace(lm, params=params).forward(*placement.batch((ids, mask)),
                                                                 record=Record(("act",), "last"))
        logits, act = placement.fetch((got.logits, got.activations["act"]))
        if k == 0:
            np.savez(os.path.join(out, f"{name}.npz"), logits=logits, act=act)
    analyse(os.path.join(out, "sharing"), mesh=distributed.make_mesh("fsdp:8", across_processes=True))
    try:
        distributed.make_mesh("data:2,fsdp:8", across_processes=True)
    except distributed.LayoutError as e:
        facts["too_large"] = str(e)
    try:  # a pass that reads its device arrays directly is refused by name, before any work
        lm.generate(PROMPTS, max_new_tokens=1, mesh=distributed.make_mesh("fsdp:8", across_processes=True))
    except distributed.LayoutError as e:
        facts["refused"] = str(e)
    with open(os.path.join(out, f"process_{k}.json"), "w") as f:
        json.dump(facts, f)


def held_fraction(params) -> dict[str, float]:
    """{path: the share of the weight's elements on this process's devices} of every weight split over fsdp."""
    import jax

    held = {}
    for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
        if x.sharding.is_fully_replicated:
            continue
        slices = {tuple((s.start, s.stop) for s in shard.index) for shard in x.addressable_shards}
        mine = sum(np.prod([(b or n) - (a or 0) for (a, b), n in zip(box, x.shape)]) for box in slices)
        held[jax.tree_util.keystr(path)] = float(mine / x.size)
    return held


if __name__ == "__main__":
    main(sys.argv[1:])
