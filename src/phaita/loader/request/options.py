"""The loader's call options as one typed value, shared by the facade and the PHAITA components."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoaderOptions:
    """Everything a load takes besides the model name and type (see ``robust_model_download``).

    A component keeps one and passes it through; the facade builds one from its keyword arguments.
    Values are checked when a load starts (:func:`phaita.loader.request.load_request.prepare`), not here.
    """

    max_retries: int = 3
    timeout: float = 300
    allow_offline: bool = False
    token: str | bool | None = field(default=None, repr=False)
    loader_kwargs: dict[str, Any] = field(default_factory=dict)  # from_pretrained's and the loader's keywords
    verify_on_load: bool | None = None  # None: PHAITA_VERIFY_ON_LOAD; True: re-hash the snapshot before loading
    require_signature: bool | None = None  # None: PHAITA_REQUIRE_SIGNATURE; True: refuse a model not signed by a trusted signer
