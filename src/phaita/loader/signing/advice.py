"""The messages of signature checks: what was refused, why, and what to do next."""

from __future__ import annotations

from pathlib import Path

from ..advice import numbered

_WHAT_TO_DO = {
    "unsigned": ["Sign it at the site: `phaita models sign {model} --key <site key>` (or load a model your "
                 "release process signed).",
                 "Or, for a model that need not be signed, unset PHAITA_REQUIRE_SIGNATURE."],
    "bad-signature": ["The signature file was changed, or it was signed by another key: do not use this copy. "
                      "Fetch the signature again from your release process, or re-sign the model."],
    "wrong-key": ["Add the signer's public key to the trust policy (PHAITA_TRUST) if you trust it; otherwise do not "
                  "use this model."],
    "untrusted-ca": ["Add the signer's root CA with its subject to the trust policy (a [[ca]] entry in trust.toml) "
                     "if you trust it; otherwise do not use this model."],
    "expired": ["Re-sign the model with a valid certificate (`phaita models sign ... --cert-chain`)."],
    "wrong-subject": ["Add the signer's subject to the [[ca]] entry of the trust policy if you trust it; otherwise "
                      "do not use this model."],
    "other-commit": ["The signature belongs to another commit: sign this commit, or load the signed one "
                     "(revision=<commit>)."],
    "inside": ["Move the signature out of the snapshot: `mv {sig_inside} {signature}` (or fetch it again: the "
               "loader puts a repository's model.sig there)."],
    "differs": ["A file differs from what was signed: repair it (`phaita models verify --repair {model}`), or the "
                "signature is not for these files."],
    "missing": ["Fetch the model again (`phaita models pull {model}`), or re-sign what the snapshot holds."],
    "extra": ["A file in the snapshot was not signed: remove it from the snapshot, or re-sign the model."],
    "lock-differs": ["The lock file was changed after it was signed: restore the signed one, or re-sign it "
                     "(`phaita models sign --locked --sign-lock --key ...`)."],
    "unsupported": ["Re-sign the model with phaita or `model_signing sign` defaults (per-file sha256)."],
    "unreadable": ["Fetch the signature again, or re-sign the model."],
    "no-library": ["Install the signing extra: `pip install 'phaita[signing]'`."],
    "no-policy": ["Set PHAITA_TRUST to the site's trust policy (keys, CAs with subjects, Sigstore identities), or "
                  "unset PHAITA_REQUIRE_SIGNATURE."],
    "policy": ["Fix the trust policy named by PHAITA_TRUST (see the guide's 'Signed models' section)."],
    "local-folder": ["Load the model from the cache (by name) so its signature can be checked, or unset "
                     "PHAITA_REQUIRE_SIGNATURE for this load."],
}


def refused_message(model: str, kind: str, detail: str, signer: str | None, signature: Path | None,
                    policy: str | None) -> str:
    """The SignatureError text: the model, the file, the signer, the policy in force, the next steps."""
    lines = [f"'{model}' was not loaded: its signature was refused: {detail}."]
    if signature is not None:
        lines.append(f"Signature file: {signature}")
    lines.append(f"Signer: {signer or 'none'}")
    lines.append(f"Trust policy: {policy or 'none (PHAITA_TRUST is unset)'}")
    lines.append("Nothing was loaded.")
    sig_inside = signature.parent.parent.parent / "snapshots" / signature.parent.name / signature.name \
        if signature is not None else "model.sig"
    steps = [s.format(model=model, signature=signature, sig_inside=sig_inside) for s in _WHAT_TO_DO.get(kind, [])]
    return "\n".join(lines) + ("\n" + numbered(steps) if steps else "")


def unchecked_warning(model: str, commit: str, kind: str, detail: str, signer: str | None) -> str:
    return (f"{model}: the signature of commit {commit[:12]} does not check out ({detail}; signer: {signer or 'unknown'}); "
            "loading it anyway because no trust policy is set (PHAITA_TRUST). Set PHAITA_TRUST to refuse such models.")
