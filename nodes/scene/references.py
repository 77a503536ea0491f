"""Binding reference images to instances (`refs.bind`).

References file (YAML, `yaml.safe_load` only; image paths relative to the file)::

    instances:
      SheenChair_fabric: {images: [velvet.png], material: fabric, prompt: "red velvet"}
      "SheenChair_wood*": wood.jpg          # a path, a list of paths, or a mapping
    default: {material: generic}            # optional; without it an unbound instance is an error

Rules:
- an entry key without glob characters must be an instance name; a glob
  (`*`, `?`, `[...]`) must match at least one instance;
- exact names win over globs; among globs, the first matching entry in file
  order wins;
- a mapping accepts `images` (a path or a list), `material` (one of
  `nodes.types.MATERIAL_CLASSES`), `prompt`, `size` (the real-world width in
  metres that the first image spans; its height follows by aspect ratio;
  default per material class, `nodes.types.DEFAULT_SWATCH_SIZE`), `mode`
  (`tile`: a swatch repeated at its real size, the default; `fit`: one
  picture placed once over the instance's largest chart) and
  `flatten_lighting` (true: the photograph's own large-scale shading, a
  light fall-off or vignette, is divided out of the images here, once; the
  texture stages then treat them as pure albedo), `lights` (several photos of
  the same swatch, pixel-aligned, each under its own light: per image the
  light's azimuth in degrees, 0 = from the image's right, 90 = from its top,
  or `[azimuth, elevation]`; at least 3; `swatch.material` then fits albedo,
  height and roughness by photometric stereo), `repeat` (`tile` mode: `exact`,
  the default, repeats the swatch as is; `vary` covers large surfaces without
  visible repetition, `swatch.material` quilting a tile of K x K swatches);
  a missing `material` falls
  back to the instance's hint from `segment.parts`;
- `default` (same forms) applies to every instance no entry names;
- pre-made `references` (from `io.demo_room`) bind instances that the file
  does not name, before `default`; file entries win over them;
- an instance with no images at all (a `default` or mapping without
  `images`) gets one flat mid-grey image (sRGB 0.5, i.e. linear ~0.214) of
  `image_size`², so downstream priors always have something to read;
- images are downscaled (antialiased bilinear) so their short side is at
  most `image_size` (never upscaled).

Each output item depends only on its own images, material and prompt, so
editing one image changes only that instance's digest.
"""
from __future__ import annotations

import fnmatch
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kornia
import torch
import yaml

from graphflow import Keyed, UserError

from ..types import DEFAULT_SWATCH_SIZE, MATERIAL_CLASSES, REFERENCE_MODES, Instance, Reference
from .images import DEFAULT_MAX_PIXELS, fit_short_side, load_image

ENTRY_KEYS = ("images", "material", "prompt", "size", "mode", "flatten_lighting", "lights", "repeat")
REPEAT_MODES = ("exact", "vary")
MAX_REFERENCES_FILE_BYTES = 10_000_000


@dataclass(frozen=True)
class Binding:
    """One parsed entry of the references file."""

    key: str  # the entry as written ("default" for the default)
    images: tuple[Path, ...]
    material: str | None
    prompt: str | None
    size: float | None = None  # metres the first image's width spans; None: the class default
    mode: str = "tile"
    flatten_lighting: bool = False
    lights: tuple[tuple[float, float | None], ...] = ()  # per image (azimuth, elevation or None), degrees
    repeat: str = "exact"  # tile mode: "exact" repeats the swatch as is, "vary" without visible repetition


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _parse_entry(key: str, value: Any, base: Path, file: str) -> Binding:
    where = f"entry '{key}'"

    def fail(message: str) -> UserError:
        return UserError(f"{where}: {message}", file=file)

    def as_paths(images: Any) -> tuple[Path, ...]:
        if isinstance(images, str):
            images = [images]
        if not isinstance(images, list) or not all(isinstance(p, str) and p.strip() for p in images):
            raise fail("images must be a path or a list of paths")
        return tuple(base / p for p in images)

    if value is None:
        raise fail("has no value; give an image path, a list of paths or a mapping")
    if isinstance(value, (str, list)):
        return Binding(key, as_paths(value), None, None)
    if not isinstance(value, dict):
        raise fail(f"must be a path, a list of paths or a mapping, not {type(value).__name__}")
    unknown = [k for k in value if k not in ENTRY_KEYS]
    if unknown:
        raise fail(f"unknown field(s) {', '.join(map(str, unknown))}; allowed: {', '.join(ENTRY_KEYS)}")
    images = as_paths(value["images"]) if value.get("images") is not None else ()
    material = value.get("material")
    if material is not None and material not in MATERIAL_CLASSES:
        raise fail(f"unknown material class {material!r}; allowed: {', '.join(MATERIAL_CLASSES)}")
    prompt = value.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise fail("prompt must be a string")
    size = value.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, float))
                             or not math.isfinite(size) or size <= 0):
        raise fail(f"size must be a positive number of metres (the width the image spans), not {size!r}")
    mode = value.get("mode", "tile")
    if mode not in REFERENCE_MODES:
        raise fail(f"unknown mode {mode!r}; allowed: {', '.join(REFERENCE_MODES)} (tile: a swatch repeated at its "
                   "real size; fit: one picture placed once over the instance)")
    flatten = value.get("flatten_lighting", False)
    if not isinstance(flatten, bool):
        raise fail(f"flatten_lighting must be true or false, not {flatten!r}")
    lights = _parse_lights(value.get("lights"), len(images), fail)
    repeat = _parse_repeat(value.get("repeat", "exact"), mode, fail)
    return Binding(key, images, material, prompt, None if size is None else float(size), mode, flatten, lights,
                   repeat)


def _parse_repeat(repeat: Any, mode: str, fail: Callable[[str], UserError]) -> str:
    """`repeat:` of an entry: how a `tile` swatch covers a surface (issue 25 item 4)."""
    if repeat not in REPEAT_MODES:
        raise fail(f"repeat must be one of {', '.join(REPEAT_MODES)}, not {repeat!r} (exact: the swatch repeated "
                   "as is; vary: large surfaces covered without visible repetition)")
    if repeat != "exact" and mode != "tile":
        raise fail(f"repeat: {repeat} needs mode: tile (a '{mode}' picture is placed once, it does not repeat)")
    return repeat


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _parse_lights(lights: Any, count: int, fail: Callable[[str], UserError]) -> tuple[tuple[float, float | None], ...]:
    """`lights:` of an entry: per image an azimuth in degrees (0 = from the image's right, 90 = from its top)
    or an `[azimuth, elevation]` pair; at least 3, one per image (photometric stereo, issue 21)."""
    if lights is None:
        return ()
    if not isinstance(lights, list):
        raise fail("lights must be a list with one light per image: an azimuth in degrees or [azimuth, elevation]")
    if len(lights) != count:
        raise fail(f"lights lists {len(lights)} light(s) for {count} image(s); give one light per image, in order")
    if len(lights) < 3:
        raise fail(f"lights needs at least 3 photos under different lights (photometric stereo), got {len(lights)}")
    out = []
    for i, light in enumerate(lights):
        pair = light if isinstance(light, list) else [light]
        if len(pair) not in (1, 2) or not all(_is_number(x) for x in pair):
            raise fail(f"lights[{i}] must be an azimuth in degrees (a number) or [azimuth, elevation], not {light!r}")
        if len(pair) == 2 and not 0 < pair[1] <= 90:
            raise fail(f"lights[{i}]: the elevation must be in (0, 90] degrees above the swatch, not {pair[1]!r}")
        out.append((float(pair[0]), float(pair[1]) if len(pair) == 2 else None))
    return tuple(out)


def read_references_file(path: Path) -> tuple[list[Binding], Binding | None]:
    """Parse and validate the file's structure (not the images): (entries in file order, default)."""
    file = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError("the references file does not exist", file=file, hint="check the path") from None
    except OSError as exc:
        raise UserError(f"cannot read the references file ({exc.strerror or exc})", file=file) from None
    if len(data) > MAX_REFERENCES_FILE_BYTES:
        raise UserError(f"the references file is over {MAX_REFERENCES_FILE_BYTES:,} bytes", file=file)
    try:
        doc = yaml.safe_load(data)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise UserError(f"malformed YAML: {exc.problem}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise UserError(f"malformed YAML: {exc}", file=file) from None
    if not isinstance(doc, dict):
        raise UserError("the references file must be a mapping with an 'instances' section", file=file,
                        hint="see the refs.bind documentation for the format")
    unknown = [k for k in doc if k not in ("instances", "default")]
    if unknown:
        raise UserError(f"unknown top-level key(s) {', '.join(map(str, unknown))}; allowed: instances, default",
                        file=file)
    instances = doc.get("instances") or {}
    if not isinstance(instances, dict):
        raise UserError("'instances' must be a mapping of instance name (or glob) to images", file=file)
    base = path.parent
    entries = []
    for key, value in instances.items():
        if not isinstance(key, str) or not key:
            raise UserError(f"instance entry {key!r} must be a non-empty name", file=file)
        entries.append(_parse_entry(key, value, base, file))
    default = _parse_entry("default", doc["default"], base, file) if doc.get("default") is not None else None
    return entries, default


def flatten_lighting(image: torch.Tensor, sigma_fraction: float = 0.25) -> torch.Tensor:
    """`image [3, H, W]` with its large-scale luminance variation divided out, mean colour kept.

    A photographed swatch often carries the photographer's light (a fall-off, a vignette). That
    shading belongs to the photograph, not the material: dividing the luminance by its Gaussian
    blur at a quarter of the image removes it once, here, so later stages treat the swatch as albedo.
    """
    luma = (image * torch.tensor([0.2126, 0.7152, 0.0722])[:, None, None]).sum(0, keepdim=True)
    sigma = max(1.0, sigma_fraction * min(image.shape[-2:]))
    size = 2 * int(math.ceil(2 * sigma)) + 1
    size = min(size, 2 * (min(image.shape[-2:]) // 2) - 1)
    blurred = kornia.filters.gaussian_blur2d(luma[None], (size, size), (sigma, sigma), border_type="reflect")[0]
    flattened = image * (luma.mean() / blurred.clamp_min(1e-4))
    return flattened.clamp(0.0, 1.0).contiguous()


def flat_grey(size: int) -> torch.Tensor:
    """A `[3, size, size]` linear image of sRGB mid grey (0.5)."""
    value = kornia.color.rgb_to_linear_rgb(torch.full((3, 1, 1), 0.5))
    return value.expand(3, size, size).contiguous()


def _file_bindings(file: Path, instances: Mapping[str, Instance]) -> tuple[dict[str, Binding], Binding | None]:
    """The references file's entry for each instance it names (exact names first, then globs in file order),
    and its default; an entry that names no instance is a `UserError`."""
    names = list(instances)
    chosen: dict[str, Binding] = {}
    entries, default = read_references_file(file)
    for entry in entries:
        if _is_glob(entry.key):
            if not any(fnmatch.fnmatchcase(n, entry.key) for n in names):
                raise UserError(f"entry '{entry.key}': the pattern matches no instance", file=str(file),
                                hint=f"instances are: {', '.join(names)}")
        elif entry.key not in instances:
            raise UserError(f"entry '{entry.key}': unknown instance", file=str(file),
                            hint=f"instances are: {', '.join(names)}")
    for entry in entries:  # exact names first, then globs in file order
        if not _is_glob(entry.key):
            chosen[entry.key] = entry
    for entry in entries:
        if _is_glob(entry.key):
            for n in names:
                if n not in chosen and fnmatch.fnmatchcase(n, entry.key):
                    chosen[n] = entry
    return chosen, default


def _bound_reference(binding: Binding, instance: Instance, image: Callable[[Path], torch.Tensor],
                     image_size: int) -> Reference:
    """The `Reference` an entry of the references file makes for `instance`."""
    try:
        images = tuple(image(p) for p in binding.images)
    except UserError as exc:
        exc.message = f"entry '{binding.key}': {exc.message}"
        exc.args = (exc.message,)
        raise
    if binding.lights and len({tuple(img.shape) for img in images}) > 1:
        sizes = ", ".join(f"{p.name} {img.shape[2]}x{img.shape[1]}" for p, img in zip(binding.images, images))
        raise UserError(f"entry '{binding.key}': lights needs pixel-aligned photos of one size, got {sizes}",
                        hint="crop or resize the photos of the capture to the same size")
    if not images:
        images = (flat_grey(image_size),)
    if binding.flatten_lighting:
        images = tuple(flatten_lighting(img) for img in images)
    material = binding.material or instance.material
    size = binding.size if binding.size is not None else DEFAULT_SWATCH_SIZE.get(material, 1.0)
    return Reference(images=images, material=material, prompt=binding.prompt, size=size, mode=binding.mode,
                     lights=binding.lights, repeat=binding.repeat)


def bind_references(instances: Mapping[str, Instance], *, file: Path | None = None,
                    references: Mapping[str, Reference] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                    image_size: int = 256, log: logging.Logger | None = None) -> Keyed[Reference]:
    """A `Reference` per instance, keyed and ordered like `instances` (rules in the module docstring)."""
    log = log or logging.getLogger("graphflow.nodes.scene")
    if file is None and references is None:
        raise UserError("refs.bind needs a references file (input 'file') or pre-made references (input "
                        "'references')", hint="connect one of them")
    chosen: dict[str, Binding] = {}
    default: Binding | None = None
    if file is not None:
        file = Path(file)
        chosen, default = _file_bindings(file, instances)
    decoded: dict[Path, torch.Tensor] = {}

    def image(path: Path) -> torch.Tensor:
        if path not in decoded:
            decoded[path] = fit_short_side(load_image(path, max_pixels=max_pixels), image_size)
        return decoded[path]

    out: dict[str, Reference] = {}
    for name in instances:
        binding = chosen.get(name)
        if binding is None and references is not None and name in references:
            out[name] = references[name]
            continue
        if binding is None:
            binding = default
        if binding is None:
            raise UserError(f"instance '{name}' has no reference images and the references file has no 'default'",
                            file=str(file) if file is not None else None,
                            hint=f"add an entry for '{name}' or a 'default: {{material: generic}}'")
        out[name] = _bound_reference(binding, instances[name], image, image_size)
        log.debug("refs.bind: %s <- %s (%d image(s), %s)", name, binding.key, len(out[name].images),
                  out[name].material)
    return Keyed(out)


def references_file_dependencies(path: Path) -> list[Path]:
    """Image files a references file names, for cache keys. Best effort: never raises."""
    try:
        entries, default = read_references_file(Path(path))
    except Exception:  # noqa: BLE001 - a cache-key helper must never fail; the run reports problems
        return []
    out: list[Path] = []
    for entry in [*entries, *([default] if default else [])]:
        for image in entry.images:
            if image not in out:
                out.append(image)
    return out
