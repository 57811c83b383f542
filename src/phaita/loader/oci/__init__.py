"""OCI registries as a model source and destination, in the CNCF ModelPack format.

Owns everything that speaks the OCI distribution protocol: ``reference`` (``oci://HOST[:PORT]/PATH
[:TAG|@sha256:...]``, and how a repo id + revision maps to a registry repository + tag), ``auth``
(anonymous, Basic, the Bearer challenge and its token endpoint; credentials from the environment or
docker's ``config.json``, never shown), ``client`` (one registry: requests with a deadline over the
loader's HTTP session, error codes turned into loader errors), ``modelpack`` (build and read ModelPack
manifests), ``upload`` (blob uploads: HEAD, cross-repository mount, chunked and resumable), ``pull``
(a manifest into the standard Hugging Face cache through the loader's own file transfer: ranges,
resume, every byte checked against the layer digest), ``signatures`` (a model signature as an OCI
referrer). Layer 4 (beside ``transfer/``): may import the foundation, ``http/``, ``hub/``, ``cache/``
and ``transfer/``. ``push`` and ``direct`` (whole pushes with retries; ``oci://`` references passed
as a model name) are layer 5 (beside ``request/``), since they use its retry policy.
"""
