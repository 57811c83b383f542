"""Load: ``from_pretrained`` on a local, complete snapshot. No network, never retried.

The fetch phase has already verified every file, so a failure here is a real incompatibility
(wrong model type, unsupported architecture, not enough memory), not something a retry fixes.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger("phaita.model_loader")

MODEL_TYPES: dict[str, str] = {
    "auto": "AutoModel",
    "causal_lm": "AutoModelForCausalLM",
    "tokenizer": "AutoTokenizer",
    "sequence_classification": "AutoModelForSequenceClassification",
    "masked_lm": "AutoModelForMaskedLM",
    "seq2seq_lm": "AutoModelForSeq2SeqLM",
    "token_classification": "AutoModelForTokenClassification",
}

# Consumed by the fetch phase: never forwarded to from_pretrained.
FETCH_ONLY_KWARGS = frozenset({
    "revision", "cache_dir", "token", "use_auth_token", "resume_download", "force_download",
    "local_files_only", "proxies", "backoff_base", "backoff_jitter", "allow_pickle", "progress", "events", "mirror",
})
# Shared by both phases.
BOTH_PHASES_KWARGS = frozenset({"subfolder", "gguf_file"})
# Meaningful for models only: dropped when the same kwargs load the tokenizer.
MODEL_ONLY_KWARGS = frozenset({
    "device_map", "torch_dtype", "dtype", "quantization_config", "low_cpu_mem_usage",
    "attn_implementation", "max_memory", "offload_folder", "offload_state_dict", "output_loading_info",
    "use_safetensors", "variant", "num_labels", "id2label", "label2id", "ignore_mismatched_sizes",
})


def model_class(model_type: str) -> Any:
    import transformers

    return getattr(transformers, MODEL_TYPES[model_type])


def quantization_kwargs(use_4bit: bool) -> dict[str, Any]:
    """4-bit loading where CUDA and bitsandbytes exist; elsewhere one WARNING and full precision."""
    if not use_4bit:
        return {}
    import torch

    has_cuda = torch.cuda.is_available()
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    if not (has_cuda and has_bnb):
        missing = " and ".join(n for n, ok in (("a CUDA GPU", has_cuda), ("the bitsandbytes package", has_bnb)) if not ok)
        logger.warning("use_4bit=True ignored: 4-bit quantization needs %s; loading in full precision.", missing)
        return {}
    from transformers import BitsAndBytesConfig

    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float16,
            bnb_4bit_use_double_quant=True),
        "device_map": "auto",
    }


def load_kwargs(kwargs: dict[str, Any], model_type: str) -> dict[str, Any]:
    """The kwargs ``from_pretrained`` gets for this model type (fetch-only keys removed)."""
    out = {k: v for k, v in kwargs.items() if k not in FETCH_ONLY_KWARGS and k != "use_4bit"}
    out.setdefault("trust_remote_code", False)
    if model_type == "tokenizer":
        out = {k: v for k, v in out.items() if k not in MODEL_ONLY_KWARGS}
    return out


def load_snapshot(snapshot: Path, model_type: str, kwargs: dict[str, Any]) -> Any:
    """``from_pretrained`` on a local folder, with no network access."""
    cls = model_class(model_type)
    return cls.from_pretrained(str(snapshot), local_files_only=True, **load_kwargs(kwargs, model_type))
