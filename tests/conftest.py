"""Fixtures shared by the test files: the zoo models, loaded once per session (a Gemma 3 load costs ~1 min)."""

import gc

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_code():
    """Free each test module's compiled executables after it. XLA's CPU backend maps every executable's code into
    memory (about 370 maps for a tiny model's init and forward); the whole suite in one process passed the kernel's
    limit of 65,530 maps (vm.max_map_count), where the next compile segfaulted (test_scoring, rc 139)."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture(scope="session")
def zoo_lm():
    """zoo_lm(name) -> the zoo model `name`, loaded once per session; skips the test when it is not installed.

    Shared between tests: never change its params or tokenizer in place."""
    import jaxneurons as jn
    from jaxneurons.loading import zoo

    loaded = {}

    def get(name: str):
        if name not in loaded:
            try:
                zoo.resolve_zoo(name)
            except (ModuleNotFoundError, FileNotFoundError) as e:
                pytest.skip(f"zoo model {name} not installed: {e}")
            loaded[name] = jn.load_model(name)
        return loaded[name]

    return get
