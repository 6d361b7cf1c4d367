"""What both launchers share: configs built from flags, checks of the model before its (slow) load, the claim
of the output folder, a timed model load, one-line errors (a traceback only with --debug), and the checkpoint
library's INFO logs kept out of the progress bars."""

from __future__ import annotations

import dataclasses
import logging as py_logging
import sys
import time
from collections.abc import Callable

from absl import flags, logging

# Bad input a user can fix: one line each. Anything else is a bug and keeps its traceback.
BAD_INPUT = (ValueError, OSError, ImportError)


def run_guarded(body: Callable[[], None], debug: bool) -> None:
    """Run a launcher's body; bad input ends with one line 'error: ...' (exit 1), or its traceback with --debug."""
    from jaxneurons.tasks import HubUnavailableError

    try:
        body()
    except (*BAD_INPUT, HubUnavailableError) as e:
        if debug:
            raise
        sys.exit(f"error: {e}")


def build_config(config_class, **fields: tuple[str, object]):
    """config_class(field=value, ...) from {field: (flag name, value)}; an invalid value's error names its flag."""
    try:
        return config_class(**{name: value for name, (_, value) in fields.items()})
    except ValueError as e:
        text = str(e)
        flag = next((flag for name, (flag, _) in sorted(fields.items(), key=lambda kv: -len(kv[0]))
                     if text.startswith(name) or text.startswith(flag)), None)
        raise ValueError(f"--{flag}: {text}" if flag else text) from None


def identity_free(*config_classes) -> set[str]:
    """The config fields that do not change results (metadata identity=False): their flags, of the same names,
    stay out of a run's identity."""
    return {f.name for config_class in config_classes for f in dataclasses.fields(config_class)
            if not f.metadata.get("identity", True)}


def run_identity(module_name: str, excluded: set[str]) -> dict:
    """The launcher's flags that change results, as {--name: value}: what its output folder belongs to."""
    own = flags.FLAGS.get_flags_for_module(module_name)
    return {"launcher": module_name.rsplit("/", 1)[-1],
            **{f"--{f.name}": f.value for f in own if f.name not in excluded}}


def check_model(source: str, tokenizer: str | None):
    """The model's config, read without its weights; FileNotFoundError when it has no tokenizer to use."""
    from jaxneurons.loading import has_tokenizer, read_model_config

    config = read_model_config(source)
    if tokenizer is None and not has_tokenizer(source):
        raise FileNotFoundError(f"--model={source} has no tokenizer files (tokenizer.json, tokenizer_config.json, "
                                "tokenizer.model): pass --tokenizer= a zoo name, .gguf file or folder holding this "
                                "model's tokenizer")
    return config


def load_model_timed(source: str, **kwargs):
    """jaxneurons.load_model with a log line before and after (the load takes up to a minute or two)."""
    import jaxneurons

    logging.info("loading the model %s ...", source)
    start = time.perf_counter()
    lm = jaxneurons.load_model(source, **kwargs)
    logging.info("loaded %s in %.1f s (%d layers x %d neurons)", source, time.perf_counter() - start,
                 lm.config.num_layers, lm.config.intermediate_size)
    return lm


class _NoCheckpointInfo(py_logging.Filter):
    """Drops orbax's INFO records (hundreds per alignment run, printed into the progress bar)."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.WARNING or "/orbax/" not in record.pathname.replace("\\", "/")


def quiet_checkpoint_logs() -> None:
    """Keep orbax's INFO logs out of the terminal (its warnings and errors still show)."""
    logging.get_absl_handler().addFilter(_NoCheckpointInfo())
