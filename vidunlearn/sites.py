"""Which edit sites a command works on: ``--site`` names (a site of the family, or ``text``,
``image``, ``both``: the family's default sites of one input stream, or of both), and for a pairs
file, whether its images let the image sites in."""

from __future__ import annotations

from .errors import ModelError
from .model import ModelSource
from .pairs import ConceptPairs
from .progress import SILENT, Reporter


STREAMS = ("text", "image", "both")  # --site also takes these: the default sites of one input stream, or of both


def _site_names(source: ModelSource, sites: list[str] | None) -> list[str]:
    adapter = source.adapter
    names: list[str] = []
    for name in sites or adapter.default_sites:
        if name in STREAMS and name not in adapter.sites:
            streams = ("text", "image") if name == "both" else (name,)
            chosen = [n for n in adapter.default_sites if adapter.site(n).stream in streams]
            if not any(adapter.site(n).stream == "image" for n in chosen) and name != "text":
                raise ModelError(f"family {adapter.family} has no image path to edit (--site {name})",
                                 fix="its cross-attention reads the text only: use --site text")
            names += chosen
        else:
            names.append(name)
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in adapter.sites]
    if unknown:
        raise ModelError(f"unknown site(s) {unknown} for family {adapter.family}",
                         fix=f"choose from {sorted(adapter.sites)}, or text, image, both")
    return names


def site_stream(source: ModelSource, key: str) -> str:
    """``text`` or ``image``: which input reaches the site of ``component/site``."""
    return source.adapter.site(key.split("/", 1)[1]).stream


def has_image_encoder(source: ModelSource) -> bool:
    """The pipeline folder holds the adapter's image encoder (Wan2.1 I2V). Wan2.2's image-to-video
    models name the same pipeline class with ``image_encoder`` null: they condition on the image
    through the latents, and have no image cross-attention to edit."""
    entry = source.index.get(source.adapter.image_encoder or "") if source.adapter.image_encoder else None
    return isinstance(entry, list) and entry[0] is not None


def site_keys(source: ModelSource, sites: list[str] | None) -> list[str]:
    """``component/site`` for every denoiser present and every chosen site name (``text``,
    ``image``, ``both``: the family's default sites of that input stream)."""
    names = _site_names(source, sites)
    if not has_image_encoder(source) and not sites:  # Wan2.2 I2V: no image cross-attention to plan
        names = [n for n in names if source.adapter.site(n).stream != "image"]
    return [f"{component}/{name}" for component in source.denoisers for name in names]


def pairs_site_keys(source: ModelSource, sites: list[str] | None, concept: ConceptPairs,
                    reporter: Reporter = SILENT) -> list[str]:
    """:func:`site_keys` for one pairs file. By default the image sites are chosen only when the
    pairs carry images (else one line says the image path is not edited); an image site chosen
    by name needs them. Pairs with images for a family without an image path: one line, too."""
    adapter = source.adapter
    names = _site_names(source, sites)
    image = [n for n in names if adapter.site(n).stream == "image"]
    if image and not has_image_encoder(source):
        if sites and any(s == "image" or s in image for s in sites):
            raise ModelError(f"--site {', '.join(image)}: this pipeline has no image encoder "
                             f"({adapter.image_encoder} is null in model_index.json)", where=str(source.path),
                             fix="it conditions on the image through the latents; choose --site text")
        names = [n for n in names if n not in image]
        reporter.note(f"{concept.concept}: the model has no image encoder (it conditions on the image through the "
                      "latents): only the text path is edited")
    elif image and not concept.has_images:
        if sites and any(s == "image" or s in image for s in sites):  # named; "both" falls back to text
            raise ModelError(f"--site {', '.join(image)} needs images, and {concept.path} carries none",
                             fix="add unsafe_image/safe_image to every pair (docs/pairs.md), or choose --site text")
        names = [n for n in names if n not in image]
        reporter.note(f"{concept.concept}: the pairs carry no images: the image path ({', '.join(image)}) is not edited")
    elif concept.has_images and not any(adapter.site(n).stream == "image" for n in adapter.sites):
        reporter.note(f"{concept.concept}: the pairs' images are not used: {adapter.family} has no image "
                      "cross-attention; only the text path is edited")
    return [f"{component}/{name}" for component in source.denoisers for name in names]
