"""The specification's path for the loader's public names (kept stable for existing code).

The implementation is :mod:`phaita.loader.request.facade`; new code imports from :mod:`phaita.loader`.
"""

from phaita.loader.request.facade import (  # noqa: F401  (re-exported names)
    MODEL_TYPES,
    AccessDeniedError,
    BadListingError,
    BrokenServerError,
    CorruptCacheError,
    CacheNotWritableError,
    DiskFullError,
    ModelDownloadError,
    ModelLoadError,
    ModelNotFoundError,
    OfflineModeError,
    ProxyAuthenticationError,
    RetryPolicy,
    RevisionNotFoundError,
    UnsafeListingError,
    UnsafeModelError,
    UntrustedCertificateError,
    __all__,
    _check_cached_model,
    is_model_cached,
    load_model_and_tokenizer,
    prefetch_model,
    robust_model_download,
)
