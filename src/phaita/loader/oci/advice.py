"""The messages of OCI registry errors, and what to do about each (see :mod:`phaita.loader.advice`)."""

from __future__ import annotations


def _steps(steps: list[str]) -> str:
    return "\n".join(f"  {i}. {s}" for i, s in enumerate(steps, 1))


def name_unknown(ref: str, code: str) -> str:
    return (f"The registry has no repository for {ref} ({code}).\nWhat to do:\n" + _steps([
        "Check the registry path: a model pushed with `phaita models push MODEL oci://HOST/PREFIX` lives at "
        "oci://HOST/PREFIX/<org>/<name> in lower case (docs/GUIDE.md, 'OCI registries').",
        "Push it there first: phaita models push <repo id> oci://HOST/PREFIX",
        "List what the registry holds: oras repo ls HOST/PREFIX (or the registry's web interface)."]))


def manifest_unknown(ref: str, code: str) -> str:
    return (f"The registry has no manifest for {ref} ({code}: no such tag or digest; distribution also answers so "
            f"for a repository it does not have).\nWhat to do:\n" + _steps([
        "Tags are the commit and the branch it was pushed from (main): list them with oras repo tags <repo>.",
        "Push that revision: phaita models push <repo id>@<revision> oci://HOST/PREFIX"]))


def denied(ref: str, status: int, tried: str) -> str:
    return (f"The registry refused access to {ref} (HTTP {status}); tried: {tried}.\nWhat to do:\n" + _steps([
        "Give credentials that may read (pull) or write (push) this repository: PHAITA_OCI_USERNAME and "
        "PHAITA_OCI_PASSWORD, or `docker login HOST` (an `auths` entry in DOCKER_CONFIG/config.json).",
        "Ask the registry's administrator for access to this repository (a robot account for a fleet)."]))


def not_a_model(ref: str, what: str) -> str:
    return (f"{ref} is not a model: {what}.\nWhat to do:\n" + _steps([
        "Point at a CNCF ModelPack artifact (artifactType application/vnd.cncf.model.manifest.v1+json), "
        "e.g. one pushed with `phaita models push`, `modctl` or `kit pack --use-model-pack`.",
        "A container image or another artifact type cannot be loaded as a model."]))


def corrupt_blob(ref: str, path: str) -> str:
    return (f"The registry at {ref} serves a copy of {path} whose sha256 does not match its layer digest; "
            f"nothing of it was kept.\nWhat to do:\n" + _steps([
                "Ask the registry's administrator to run garbage collection / a storage check (the blob on "
                "disk is damaged), then push the model again: phaita models push <repo id> <registry>",
                "Or list the Hub after the registry in PHAITA_ENDPOINTS, so the file comes from there."]))


def plain_http_refused(host: str) -> str:
    return (f"{host}: the registry does not speak TLS, and plain http is only used for a registry on loopback or "
            f"one listed in PHAITA_OCI_INSECURE_REGISTRIES (docker's insecure-registries rule). Add "
            f"PHAITA_OCI_INSECURE_REGISTRIES={host} if that is intended.")
