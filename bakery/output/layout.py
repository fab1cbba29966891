"""Where a render's files go: the output folder, the secrets bundle in it, and the images
folder beside it."""
from __future__ import annotations

from pathlib import Path

SECRETS_NAME = "secrets.yaml"
IMAGES_SUFFIX = "-images"


def default_out(cluster) -> Path:
    return Path.cwd() / "outputs" / cluster.name


def images_folder_name(cluster_name: str) -> str:
    """The name of the images folder of the output folder `cluster_name` (outputs/<cluster>/ by default)."""
    return f"{cluster_name}{IMAGES_SUFFIX}"


def images_dir(out) -> Path:
    """Where `bakery build` has Packer put its artifacts and manifest.json: beside the output
    folder, not in it, because every render replaces outputs/<cluster>/ as a whole."""
    out = Path(out).absolute()
    return out.parent / images_folder_name(out.name)
