"""jaxneurons: how the FFN neurons of LLMs are shared across languages and tasks, in JAX/Flax."""

from jaxneurons.attribution import integrated_gradients, static_scores
from jaxneurons.lens import LogitLens, NeuronTokens, logit_lens, neuron_tokens, plot_logit_lens
from jaxneurons.lm import LanguageModel
from jaxneurons.loading import load_model
from jaxneurons.loading.export import export_hf, to_hf_config
from jaxneurons.models.config import ModelConfig, from_hf_config
from jaxneurons.models.decoder import NAMES, Decoder, Intervention, Patch, Record
from jaxneurons.models.output import Output

__all__ = ["integrated_gradients", "static_scores", "logit_lens", "neuron_tokens", "plot_logit_lens", "LogitLens", "NeuronTokens", "LanguageModel", "load_model", "export_hf", "to_hf_config", "ModelConfig", "from_hf_config", "NAMES", "Decoder", "Intervention", "Patch", "Record", "Output"]
__version__ = "0.1.0"
