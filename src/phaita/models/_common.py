"""Shared plumbing of the PHAITA components: one loader call per model, error naming, encoding
with mean pooling, and chat-style generation. No ``from_pretrained`` here: every load goes
through the loader's public facade (:mod:`phaita.loader`).
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any, Sequence

import numpy as np

from phaita.loader.request.options import LoaderOptions  # the loader's own options object, passed through

log = logging.getLogger("phaita.models")

__all__ = ["LoaderOptions", "load_pretrained", "component_error", "mean_pool_embed", "chat_generate"]


def component_error(component: str, err: Exception) -> Exception:
    """A copy of ``err`` (same class, same attributes) whose message starts with ``component: ``."""
    msg = f"{component}: {err}"
    try:
        new = copy.copy(err)
    except Exception:  # pragma: no cover - an exception class that cannot be copied
        return err
    new.args = (msg,) + tuple(err.args[1:])
    if hasattr(new, "message"):
        new.message = msg
    new.component = component  # type: ignore[attr-defined]
    return new


def load_pretrained(component: str, model_name: str | Sequence[str], model_type: str, opts: LoaderOptions,
                    extra_kwargs: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """``load_model_and_tokenizer`` for ``component``; a ``ModelDownloadError`` names the component.

    ``gguf_file`` is added from the manifest when the model is a GGUF repo the manifest knows.
    """
    from phaita.loader import ModelDownloadError, load_model_and_tokenizer
    from phaita.data.manifest import gguf_file_for

    kwargs = dict(extra_kwargs or {})
    kwargs.update(opts.loader_kwargs)
    if "gguf_file" not in kwargs:
        gguf = gguf_file_for(model_name)
        if gguf:
            kwargs["gguf_file"] = gguf
    name = list(model_name) if isinstance(model_name, (list, tuple)) else model_name
    log.info("%s: loading %s (%s) through the model loader", component, name, model_type)
    try:
        return load_model_and_tokenizer(
            name, model_type=model_type, max_retries=opts.max_retries, timeout=opts.timeout,
            allow_offline=opts.allow_offline, token=opts.token, **kwargs)
    except ModelDownloadError as exc:
        raise component_error(component, exc) from exc


def load_or_fallback(component: str, fallback: bool, fallback_what: str, *args: Any, **kwargs: Any
                     ) -> tuple[Any, Any] | None:
    """:func:`load_pretrained`, or (when ``fallback``) ``None`` after one WARNING naming the cause."""
    try:
        return load_pretrained(component, *args, **kwargs)
    except Exception as exc:
        if not fallback:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("%s: model unavailable (%s: %s); falling back to %s", component, type(exc).__name__,
                    first, fallback_what)
        return None


def load_causal_lm(component: str, spec: Any, model_name: str | Sequence[str], explicit_name: bool, use_4bit: bool,
                   fallback: bool, fallback_what: str, opts: LoaderOptions) -> tuple[Any, Any] | None:
    """The generators' LM: the manifest's loader options for its default model, ``use_4bit`` as asked."""
    extra = {} if explicit_name else spec.loader_kwargs()
    extra.pop("use_4bit", None)
    if use_4bit:
        extra["use_4bit"] = True
    return load_or_fallback(component, fallback, fallback_what, model_name, "causal_lm", opts, extra)


def model_label(model_name: str | Sequence[str], model: Any) -> str:
    """The name of the model actually loaded (for candidate lists, the one that worked)."""
    path = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    if isinstance(model_name, str):
        return model_name
    for cand in model_name:
        if cand in path or cand.replace("/", "--") in path:
            return cand
    return path or str(list(model_name))


def mean_pool_embed(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 32,
                    max_length: int = 128, normalize: bool = True) -> np.ndarray:
    """Encode ``texts`` with mean pooling over the attention mask; float32 array (n, hidden)."""
    import torch

    if getattr(tokenizer, "pad_token", None) is None and getattr(tokenizer, "eos_token", None) is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = list(texts[i:i + batch_size])
            enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = model(**enc).last_hidden_state if not hasattr(model, "lm_head") else \
                model(**enc, output_hidden_states=True).hidden_states[-1]
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out.append(pooled.float().cpu().numpy())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)


_ROLE_PREFIX = re.compile(r"^\s*(patient|assistant|paramedic|answer|question|quote|me)\s*:\s*", re.I)


def chat_generate(model: Any, tokenizer: Any, messages: list[dict[str, str]], *, max_new_tokens: int = 60,
                  temperature: float = 0.7, top_p: float = 0.9, do_sample: bool = True, seed: int | None = None,
                  repetition_penalty: float = 1.1, prefix: str = "") -> str:
    """Generate a reply: the chat template when the tokenizer has one, a plain prompt otherwise.

    ``prefix`` starts the reply (e.g. ``"I"`` keeps a small model in the first person); it is
    included in the returned text.
    """
    import torch

    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + prefix
        enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    else:
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages if m["role"] != "system"]
        system = " ".join(m["content"] for m in messages if m["role"] == "system")
        prompt = (system + "\n\n" if system else "") + "\n".join(lines) + "\nAssistant:" + (" " + prefix if prefix else "")
        enc = tokenizer(prompt, return_tensors="pt")
    ids, mask = enc["input_ids"], enc.get("attention_mask")
    ctx = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(ctx, int) and ctx > 1:  # a short-context model: keep the prompt's end, never index past it
        max_new_tokens = min(max_new_tokens, ctx // 2)
        keep = ctx - max_new_tokens
        if ids.shape[1] > keep:
            log.debug("prompt of %d tokens cut to its last %d (model context %d)", ids.shape[1], keep, ctx)
            ids, mask = ids[:, -keep:], (mask[:, -keep:] if mask is not None else None)
    if seed is not None:
        torch.manual_seed(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # remove_invalid_values: a small quantized model occasionally yields inf/NaN scores while sampling
    # (seen once in the full suite on a fresh machine); those become -inf instead of crashing generate().
    gen_kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=pad,
                                      repetition_penalty=repetition_penalty, remove_invalid_values=True)
    if do_sample:
        gen_kwargs.update(temperature=temperature, top_p=top_p)
    model.eval()
    try:
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, **gen_kwargs)
    except RuntimeError as exc:  # numerically broken step: the callers fall back to their templates
        log.warning("generation failed (%s); using the template path for this text", " ".join(str(exc).split())[:200])
        return ""
    reply = tokenizer.decode(out[0][ids.shape[1]:], skip_special_tokens=True)
    if not prefix:
        return reply
    return prefix + reply if reply[:1] in ("'", "’", ",", ".", "") or not prefix[-1].isalpha() else prefix + (
        "" if reply[:1].isspace() else " ") + reply


def clean_generation(text: str, *, max_sentences: int = 3, max_words: int = 60) -> str:
    """First paragraph, role prefixes and quotes removed, repeated sentences dropped, cut to length."""
    text = text.replace("\r", "").strip()
    text = text.split("\n\n")[0].split("\n")[0] if text else ""
    text = _ROLE_PREFIX.sub("", text).strip().strip('"“”\'').strip()
    sentences = re.findall(r"[^.!?]+[.!?]?", text)
    kept: list[str] = []
    seen: set[str] = set()
    for s in sentences:
        s = s.strip()
        key = re.sub(r"\W+", " ", s.lower()).strip()
        if not key or key in seen:
            continue
        seen.add(key)
        kept.append(s)
        if len(kept) >= max_sentences:
            break
    words = " ".join(kept).split()
    out = " ".join(words[:max_words])
    if out and words[:max_words] != words:
        out = out.rstrip(",;:") + "."
    if out and out[-1] not in ".!?":
        # a cut-off final sentence: drop it when an earlier one is complete
        if len(kept) > 1:
            out = " ".join(kept[:-1])
        else:
            out += "."
    return out.strip()
