"""Load: ``from_pretrained`` on a local, complete snapshot. No network, never retried.

The fetch phase has already verified every file, so a failure here is a real incompatibility
(wrong model type, unsupported architecture, not enough memory), not something a retry fixes.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, Mapping

from .gguf_copy import load_gguf

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
    "verify_on_load", "require_signature",
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


def quantization_kwargs(use_4bit: bool, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What ``use_4bit=True`` adds to ``from_pretrained``; one WARNING whenever it cannot be 4-bit.

    CUDA and bitsandbytes: 4-bit nf4. CUDA without bitsandbytes: half precision on the GPU
    (bfloat16 where supported, else float16), not float32 on the CPU (a 7B model would need 28 GB
    of RAM); a ``dtype`` or ``device_map`` the caller ``given`` wins. No CUDA: full precision.
    """
    if not use_4bit:
        return {}
    import torch

    has_cuda = torch.cuda.is_available()
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    if has_cuda and not has_bnb:
        half = torch.bfloat16 if _bf16_supported(torch) else torch.float16
        logger.warning("use_4bit=True: 4-bit quantization needs the bitsandbytes package, which is not installed; "
                       "loading in half precision (%s) on the GPU instead.", str(half).replace("torch.", ""))
        fallback = {"dtype": half, "device_map": "auto"}
        given = given or {}
        return {k: v for k, v in fallback.items() if k not in given and not (k == "dtype" and "torch_dtype" in given)}
    if not has_cuda:
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


def _bf16_supported(torch: Any) -> bool:
    try:
        return bool(torch.cuda.is_bf16_supported())
    except Exception:  # an old driver or a CPU-only build asked about CUDA: float16 is the safe choice
        return False


def load_kwargs(kwargs: dict[str, Any], model_type: str) -> dict[str, Any]:
    """The kwargs ``from_pretrained`` gets for this model type (fetch-only keys removed)."""
    out = {k: v for k, v in kwargs.items() if k not in FETCH_ONLY_KWARGS and k != "use_4bit"}
    if "torch_dtype" in out:  # transformers 5 renamed it and warns on every load that uses the old name
        torch_dtype = out.pop("torch_dtype")
        out.setdefault("dtype", torch_dtype)
    out.setdefault("trust_remote_code", False)
    if model_type == "tokenizer":
        out = {k: v for k, v in out.items() if k not in MODEL_ONLY_KWARGS}
    return out


def load_snapshot(snapshot: Path, model_type: str, kwargs: dict[str, Any], req: Any = None) -> Any:
    """``from_pretrained`` on a local folder, with no network access.

    With the call's ``req`` (a ``LoadRequest``), a GGUF file of its cache loads through its converted
    copy (:mod:`.gguf_copy`): re-hashed with ``verify_on_load``, none used with ``require_signature``.
    """
    cls = model_class(model_type)
    args = load_kwargs(kwargs, model_type)
    if args.get("gguf_file") and req is not None:
        return load_gguf(cls, snapshot, args, req.cache_dir, verify=req.verify_on_load, signed=req.require_signature)
    return cls.from_pretrained(str(snapshot), local_files_only=True, **args)
