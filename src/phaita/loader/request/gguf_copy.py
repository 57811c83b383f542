"""A GGUF model converted once, and loaded from the converted copy afterwards.

transformers reads a GGUF file by parsing its metadata three times (config, tokenizer, weights)
and de-quantizing every tensor: about 36 s for SmolLM2-135M (Q4_1, 100 MB) on a 2-core CPU, on
every load, where the same model saved as safetensors loads in about a second. So the first load
saves what transformers built (``save_pretrained``) under ``PHAITA_GGUF_CACHE`` (default
``<cache>/.phaita/gguf``, see :func:`phaita.loader.cache.layout.gguf_copies_dir`), in a folder named
by the GGUF file's sha256 (its blob name), the class, the dtype asked for and transformers'
version; later loads read that folder.

What it trusts: a copy is made only from a blob of the cache (verified when it was fetched), and
written whole or not at all (a temp folder, renamed into place with its record inside). The record
lists each file's size and sha256: a load checks the sizes, as a warm load checks blobs, and
``verify_on_load`` re-hashes them. A copy that does not match, or that ``from_pretrained`` cannot
read, is removed and made again. With a
signature required the copy is not used: what loads is the signed GGUF file itself.

Loaded from the GGUF file as before, with no copy: a local folder that is not the cache, a
quantization config, remote code, a subfolder, and copies over ``MAX_COPY`` bytes or that would
leave less than ``MIN_FREE`` on the disk. Keeping a copy never fails a load (a WARNING says why).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from filelock import Timeout
from huggingface_hub.utils import WeakFileLock

from .. import config
from ..cache.layout import gguf_copies_dir
from ..hashing import SHA256, SHA256_RE, hash_file

logger = logging.getLogger("phaita.model_loader")

RECORD = "phaita-gguf.json"
MAX_COPY = 8 << 30  # a 7B model de-quantized to float16 is 14 GB: converted each time instead
MIN_FREE = 1 << 30
LOCK_WAIT = 900  # seconds to wait for another process's conversion of the same file, then convert here
# from_pretrained options the copy serves as well as the GGUF file (placement, not content); any other
# option (quantization_config, a revision of remote code...) loads from the GGUF file
_PLACEMENT = frozenset({"gguf_file", "dtype", "device_map", "low_cpu_mem_usage", "attn_implementation",
                        "max_memory", "offload_folder", "offload_state_dict", "trust_remote_code"})


def load_gguf(cls: Any, snapshot: Path, args: dict[str, Any], cache: Path, *, verify: bool, signed: bool) -> Any:
    """``cls.from_pretrained`` on ``args["gguf_file"]`` of ``snapshot``, through its converted copy when
    there can be one (see the module's text)."""
    folder = _copy_folder(cls, snapshot, args, cache, signed)
    if folder is None:
        return _convert(cls, snapshot, args)
    if (folder / RECORD).is_file() and _usable(folder, verify):
        if (loaded := _from_copy(cls, folder, args)) is not None:  # (a tokenizer's truth is its length)
            return loaded
    with contextlib.ExitStack() as held:
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            # one process converts, the others wait for its copy (two services booting at once)
            held.enter_context(WeakFileLock(folder.with_name(f".{folder.name}.lock"), timeout=LOCK_WAIT))
        except (OSError, Timeout) as exc:  # a read-only cache, a conversion elsewhere that takes too long
            logger.warning("%s: no converted copy in %s (%s: %s); converting the GGUF file", args["gguf_file"],
                           folder.parent, type(exc).__name__, exc)
            return _convert(cls, snapshot, args)
        if _usable(folder, verify) and (loaded := _from_copy(cls, folder, args)) is not None:
            return loaded
        loaded = _convert(cls, snapshot, args)
        _keep(loaded, folder, args["gguf_file"])
        return loaded


def _convert(cls: Any, snapshot: Path, args: dict[str, Any]) -> Any:
    return cls.from_pretrained(str(snapshot), local_files_only=True, **args)


def _from_copy(cls: Any, folder: Path, args: dict[str, Any]) -> Any:
    """The model from its copy; None (the copy removed, one WARNING) when from_pretrained refuses it."""
    rest = {k: v for k, v in args.items() if k != "gguf_file"}
    try:
        loaded = cls.from_pretrained(str(folder), local_files_only=True, **rest)
    except Exception as exc:  # a copy a newer transformers cannot read, a file damaged at the same size
        logger.warning("the converted copy %s could not be loaded (%s: %s); converting the GGUF file again",
                       folder, type(exc).__name__, " ".join(str(exc).split())[:300])
        shutil.rmtree(folder, ignore_errors=True)
        return None
    logger.info("%s: loaded from its converted copy %s", args["gguf_file"], folder)
    return loaded


def _copy_folder(cls: Any, snapshot: Path, args: dict[str, Any], cache: Path, signed: bool) -> Path | None:
    root = config.gguf_cache(gguf_copies_dir(cache))
    if root is None or signed or set(args) - _PLACEMENT or args.get("trust_remote_code"):
        return None
    blob = Path(os.path.realpath(snapshot / args["gguf_file"]))
    if not SHA256_RE.match(blob.name) or blob.parent.name != "blobs":
        return None  # not a verified blob of the cache (a local folder): nothing to name the copy by
    import transformers

    dtype = str(args.get("dtype", "default")).replace("torch.", "")
    return root / f"{blob.name}-{cls.__name__}-{dtype}-transformers{transformers.__version__}"


def _usable(folder: Path, verify: bool) -> bool:
    record = folder / RECORD
    if not record.is_file():
        return False
    try:
        files = json.loads(record.read_text(encoding="utf-8"))["files"]
        for name, (size, sha) in files.items():
            path = folder / name
            if path.stat().st_size != size or (verify and hash_file(path, SHA256, size) != sha):
                raise ValueError(f"{name} is not the file its record lists")
        return True
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("the converted copy %s is not usable (%s); converting the GGUF file again", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return False


def _keep(loaded: Any, folder: Path, gguf_file: str) -> None:
    size = _bytes_of(loaded)
    free = shutil.disk_usage(folder.parent).free
    if size > MAX_COPY or free - size < MIN_FREE:
        logger.info("%s: no converted copy kept (%d bytes; %d free)", gguf_file, size, free)
        return
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        _save_dequantized(loaded, tmp)
        files = {str(p.relative_to(tmp)): (p.stat().st_size, hash_file(p, SHA256, p.stat().st_size))
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / RECORD).write_text(json.dumps({"source": gguf_file, "files": files}, indent=1), encoding="utf-8")
        try:
            os.rename(tmp, folder)
        except OSError:  # another process kept the same copy first
            if not (folder / RECORD).is_file():
                raise
        logger.info("%s: converted copy kept in %s (later loads read it)", gguf_file, folder)
    except Exception as exc:  # a full disk, a model save_pretrained refuses: the load itself stands
        logger.warning("%s: could not keep a converted copy in %s (%s: %s); the next load converts again",
                       gguf_file, folder.parent, type(exc).__name__, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _save_dequantized(loaded: Any, folder: Path) -> None:
    """``save_pretrained`` of what transformers built from the GGUF file: plain tensors, de-quantized.

    transformers refuses to save a model that still carries its GGUF quantizer, although its weights
    are de-quantized already; the quantizer and its config entry are set aside while saving (the model
    was loaded by this call and is not yet anyone else's), so the copy loads as the plain model it is.
    """
    quantizer = getattr(loaded, "hf_quantizer", None)
    model_config = getattr(loaded, "config", None)
    quant_config = getattr(model_config, "quantization_config", None)
    if quantizer is None:
        loaded.save_pretrained(str(folder))
        return
    try:
        loaded.hf_quantizer = None
        if quant_config is not None:
            del model_config.quantization_config
        loaded.save_pretrained(str(folder))
    finally:
        loaded.hf_quantizer = quantizer
        if quant_config is not None:
            model_config.quantization_config = quant_config


def _bytes_of(loaded: Any) -> int:
    state = getattr(loaded, "state_dict", None)
    if state is None:
        return 0  # a tokenizer: a few MB
    return sum(t.numel() * t.element_size() for t in state().values())
