"""Test infrastructure: a real local Hugging Face Hub with fault injection, and tiny models.

>>> from phaita.testing import LocalHub, publish_tiny_models, parse_faults
>>> publish_tiny_models(root)                                     # doctest: +SKIP
>>> with LocalHub(root, faults=parse_faults("reset@30%")) as hub:   # doctest: +SKIP
...     os.environ["HF_ENDPOINT"] = hub.url
"""

from .faults import KINDS, FaultPlan, FaultRule, FiredFault, parse_faults, parse_size
from .hub import LocalHub, RepoFile, RequestRecord, commit_sha, repo_files
from .nginx_hub import NginxHub, nginx_binary
from .models import (
    TINY_REPOS,
    publish_large_file,
    publish_pypi_models,
    publish_tiny_models,
    write_multiformat_repo,
    write_tiny_bert,
    write_tiny_bert_bin,
    write_tiny_deberta,
    write_tiny_gpt2,
)
from .tiny_gguf import write_tiny_gguf

__all__ = [
    "KINDS",
    "FaultPlan",
    "FaultRule",
    "FiredFault",
    "parse_faults",
    "parse_size",
    "LocalHub",
    "NginxHub",
    "nginx_binary",
    "RepoFile",
    "RequestRecord",
    "commit_sha",
    "repo_files",
    "TINY_REPOS",
    "publish_large_file",
    "publish_pypi_models",
    "publish_tiny_models",
    "write_multiformat_repo",
    "write_tiny_bert",
    "write_tiny_bert_bin",
    "write_tiny_deberta",
    "write_tiny_gguf",
    "write_tiny_gpt2",
]
