"""Pretrained weights from the Hugging Face hub, through huggingface_hub's cache (torch-free).

``hub_weights(repo_id, filename)`` returns a local file: from the cache when it is there,
else downloaded from ``HF_ENDPOINT`` (default huggingface.co). ``HF_HUB_OFFLINE=1`` reads only
the cache; ``HF_HUB_CACHE``/``HF_HOME`` move it. A failure names the cache folder to fill.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.errors import TrainingError

__all__ = ["PRETRAINED", "hub_weights"]

#: ``--encoder-weights`` value that fetches timm's default pretrained weights of the encoder
PRETRAINED = "imagenet"


def hub_weights(repo_id: str, filename: str = "model.safetensors") -> Path:
    """The local path of ``filename`` of the hub repository ``repo_id`` (``owner/name`` or
    ``owner/name@revision``), downloaded into huggingface_hub's cache when it is not there.
    ``HF_HUB_OFFLINE=1`` reads the cache only; ``HF_ENDPOINT`` names the hub to ask. A failure
    raises :class:`TrainingError` naming the cache folder to fill (never a random encoder)."""
    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError:
        raise TrainingError(
            f"--encoder-weights {PRETRAINED} needs huggingface_hub; pip install 'edgeseg[zoo]' "
            "or give a local weights file"
        ) from None
    repo, _, revision = repo_id.partition("@")
    cache = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    try:
        return Path(hf_hub_download(repo, filename, revision=revision or None))
    except Exception as e:  # noqa: BLE001 - offline, no network, 404, a broken mirror
        how = (
            "HF_HUB_OFFLINE is set and the file is not in the cache"
            if constants.is_offline_mode()
            else f"{constants.ENDPOINT} did not serve it ({type(e).__name__}: {str(e)[:160]})"
        )
        raise TrainingError(
            f"encoder weights {repo}/{filename}: {how}. Fill the cache {cache} on a machine "
            f"with network (hf download {repo} {filename}, then copy the folder, or set "
            "HF_HUB_CACHE), point HF_ENDPOINT at a hub mirror, or give a local weights file"
        ) from None
