"""What a chaos run loads: a few tiny models, each in the ways PHAITA loads them."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

SHARDED = "chaos/tiny-bert-sharded"
RAW = "chaos/raw-weights"


@dataclass(frozen=True)
class LoadSpec:
    """One way of loading one repository."""

    repo: str
    how: str  # "model" (robust_model_download), "pair" (load_model_and_tokenizer), "fetch" (prefetch_model)
    model_type: str

    @property
    def name(self) -> str:
        return f"{self.repo} [{self.how}:{self.model_type}]"


SPECS = (
    LoadSpec("phaita-test/tiny-bert", "model", "auto"),
    LoadSpec("phaita-test/tiny-bert", "model", "tokenizer"),
    LoadSpec("phaita-test/tiny-gpt2", "pair", "causal_lm"),
    LoadSpec("phaita-test/tiny-deberta", "model", "tokenizer"),
    LoadSpec("phaita-test/tiny-deberta", "model", "auto"),
    LoadSpec(SHARDED, "model", "auto"),
    LoadSpec(RAW, "fetch", "auto"),
)


def publish_chaos_models(root: Path, raw_size: int) -> None:
    """The tiny models, a sharded BERT, and a raw weights file of ``raw_size`` bytes."""
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    from ..models import publish_large_file, write_tiny_bert, write_tiny_deberta, write_tiny_gpt2

    hf_logging.disable_progress_bar()
    write_tiny_bert(root / "phaita-test" / "tiny-bert")
    write_tiny_gpt2(root / "phaita-test" / "tiny-gpt2")
    write_tiny_deberta(root / "phaita-test" / "tiny-deberta")
    sharded = root / SHARDED
    BertModel.from_pretrained(str(root / "phaita-test" / "tiny-bert")).save_pretrained(str(sharded), max_shard_size="60KB")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy2(root / "phaita-test" / "tiny-bert" / name, sharded / name)
    publish_large_file(root, RAW, raw_size)
    (root / RAW / "config.json").write_text('{"note": "raw weights for the chaos runner"}\n')
