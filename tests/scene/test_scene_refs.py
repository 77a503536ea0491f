"""refs.bind: the references file format, its errors, per-item digests; io.demo_room; image decoding."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nodes.catalog  # noqa: F401
from graphflow import Keyed, UserError, registry
from graphflow.fingerprint import fingerprint
from graphflow.testing import make_context
from nodes.scene.images import decode_image_bytes, load_image
from nodes.types import MATERIAL_CLASSES, Instance, Reference


def instances(*names: str, material: str = "generic") -> Keyed[Instance]:
    mask = torch.zeros(4, dtype=torch.bool)
    return Keyed({n: Instance(name=n, face_mask=mask, bbox=torch.zeros(2, 3), material=material) for n in names})


CHAIR = instances("SheenChair_fabric", "SheenChair_wood", "SheenChair_metal", "SheenChair_label")


def png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (32, 24)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    png(tmp_path / "velvet.png", (200, 20, 20))
    png(tmp_path / "wood.jpg", (120, 80, 40))
    png(tmp_path / "metal.png", (150, 150, 160))
    return tmp_path


def bind(tmp: Path, yaml_text: str | None, inst: Keyed[Instance] = CHAIR, **kwargs: object) -> Keyed[Reference]:
    file = None
    if yaml_text is not None:
        file = tmp / "refs.yaml"
        file.write_text(yaml_text)
    params = {k: v for k, v in kwargs.items() if k in ("image_size", "max_pixels")}
    node = registry.get("refs.bind")(params)
    return node.run(make_context(), instances=inst, file=file, references=kwargs.get("references"))


def test_binds_exact_glob_default(folder: Path) -> None:
    refs = bind(folder, """
instances:
  SheenChair_fabric: {images: [velvet.png], material: fabric, prompt: "red velvet"}
  "SheenChair_wood*": wood.jpg
  "SheenChair_*": [metal.png, metal.png]
default: {material: generic}
""")
    assert list(refs) == list(CHAIR)  # exactly the instance names, in instance order
    fabric, wood, metal, label = refs.values()
    assert fabric.material == "fabric" and fabric.prompt == "red velvet" and len(fabric.images) == 1
    assert fabric.images[0].shape == (3, 24, 32)
    assert float(fabric.images[0][0].mean()) > float(fabric.images[0][1].mean())
    assert len(wood.images) == 1 and wood.material == "generic"  # material falls back to the instance hint
    assert len(metal.images) == 2 and len(label.images) == 2  # first matching glob wins, exact names first
    # linear RGB: sRGB 200 -> ~0.58
    assert abs(float(fabric.images[0][0, 0, 0]) - 0.578) < 0.01


def test_default_without_images_gives_flat_grey(folder: Path) -> None:
    refs = bind(folder, "instances: {SheenChair_fabric: velvet.png}\ndefault: {material: wood}\n", image_size=16)
    grey = refs["SheenChair_wood"]
    assert grey.material == "wood" and grey.images[0].shape == (3, 16, 16)
    assert torch.allclose(grey.images[0], torch.full((3, 16, 16), 0.2140), atol=1e-3)


def test_images_are_downscaled_to_image_size(folder: Path) -> None:
    png(folder / "big.png", (10, 200, 10), size=(400, 300))
    refs = bind(folder, "instances: {'*': big.png}\n", image_size=60)
    assert refs["SheenChair_metal"].images[0].shape == (3, 60, 80)


def test_premade_references_and_file_override(folder: Path) -> None:
    premade = Keyed({n: Reference(images=(torch.zeros(3, 4, 4),), material="stone") for n in CHAIR})
    refs = bind(folder, None, references=premade)
    assert all(r.material == "stone" for r in refs.values())
    refs = bind(folder, "instances: {SheenChair_wood: wood.jpg}\n", references=premade)
    assert refs["SheenChair_wood"].material == "generic" and refs["SheenChair_fabric"].material == "stone"


@pytest.mark.parametrize("yaml_text, culprit", [
    ("instances: {Sofa: velvet.png}\ndefault: {}\n", "Sofa"),  # unknown instance
    ("instances: {'Lamp*': velvet.png}\ndefault: {}\n", "Lamp*"),  # pattern matching nothing
    ("instances: {SheenChair_fabric: missing.png}\ndefault: {}\n", "SheenChair_fabric"),  # unreadable file
    ("instances: {SheenChair_fabric: notes.txt}\ndefault: {}\n", "SheenChair_fabric"),  # not an image
    ("instances: {SheenChair_fabric: velvet.png}\n", "SheenChair_wood"),  # unbound without default
    ("instances: {SheenChair_fabric: {images: velvet.png, material: velvet}}\n", "velvet"),  # bad material
    ("instances: {SheenChair_fabric: {images: velvet.png, colour: red}}\n", "colour"),  # unknown field
    ("instances: {SheenChair_fabric: [velvet.png\n", "line"),  # malformed YAML
    ("- just\n- a list\n", "instances"),  # wrong top-level shape
    ("instances: {SheenChair_fabric: }\ndefault: {}\n", "SheenChair_fabric"),  # empty entry
    ("instances: {SheenChair_fabric: velvet.png}\ndefaults: {}\n", "defaults"),  # unknown top-level key
    ("!!python/object/apply:os.system ['echo hacked']\n", "YAML"),  # never executes tags
])
def test_reference_file_errors_name_the_entry(folder: Path, yaml_text: str, culprit: str) -> None:
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(UserError) as err:
        bind(folder, yaml_text)
    message = str(err.value)
    assert culprit in message, message
    if culprit == "velvet":
        assert all(m in message for m in MATERIAL_CLASSES)  # lists the allowed classes


def test_no_file_and_no_references(folder: Path) -> None:
    with pytest.raises(UserError, match="needs a references file"):
        bind(folder, None)


def test_missing_references_file(folder: Path) -> None:
    node = registry.get("refs.bind")()
    with pytest.raises(UserError, match="does not exist"):
        node.run(make_context(), instances=CHAIR, file=folder / "nope.yaml")


def test_editing_one_image_changes_only_its_item(folder: Path) -> None:
    text = "instances: {SheenChair_fabric: velvet.png, SheenChair_wood: wood.jpg}\ndefault: {images: metal.png}\n"
    before = {k: fingerprint(v) for k, v in bind(folder, text).items()}
    png(folder / "wood.jpg", (90, 60, 30))
    after = {k: fingerprint(v) for k, v in bind(folder, text).items()}
    assert [k for k in before if before[k] != after[k]] == ["SheenChair_wood"]
    deps = registry.get("refs.bind")().file_dependencies("file", folder / "refs.yaml")
    assert {p.name for p in deps} == {"velvet.png", "wood.jpg", "metal.png"}


# ---------------------------------------------------------------- io.demo_room

def demo(**params: object):
    return registry.get("io.demo_room")(params).run(make_context())


def test_demo_room_instances_and_references() -> None:
    room = demo()
    names = list(room.references)
    assert len(names) >= 6 and {"floor", "rug", "table", "sofa", "shelf"} <= set(names)
    instances_by_node = registry.get("segment.parts")().run(make_context(), scene=room.scene)
    assert list(instances_by_node) == names
    assert room.scene.num_faces < 5000
    uvs = room.scene.uvs
    assert float(uvs.min()) >= 0 and float(uvs.max()) <= 1
    assert all("notes" not in info for info in room.scene.part_info)  # own UVs, kept (no overlap)
    materials = {n: r.material for n, r in room.references.items()}
    assert materials["table"] == "wood" and materials["sofa"] == "fabric" and len(set(materials.values())) >= 5
    means = torch.stack([r.images[0].mean(dim=(1, 2)) for r in room.references.values()])
    distances = torch.cdist(means, means) + torch.eye(len(names))
    assert float(distances.min()) > 0.02  # visually distinct colours
    for ref in room.references.values():
        assert ref.images[0].shape == (3, 256, 256) and ref.material in MATERIAL_CLASSES
        assert float(ref.images[0].min()) >= 0 and float(ref.images[0].max()) <= 1
    bound = registry.get("refs.bind")().run(make_context(), instances=instances_by_node, references=room.references)
    assert list(bound) == names


def test_demo_room_is_deterministic_and_seeds_are_per_instance() -> None:
    a, b = demo(), demo()
    assert fingerprint(a.scene) == fingerprint(b.scene)
    assert all(fingerprint(a.references[k]) == fingerprint(b.references[k]) for k in a.references)
    changed = demo(seeds={"sofa": 7})
    diff = [k for k in a.references if fingerprint(a.references[k]) != fingerprint(changed.references[k])]
    assert diff == ["sofa"]
    assert fingerprint(demo(seed=1).references["table"]) != fingerprint(a.references["table"])
    with pytest.raises(UserError, match="couch"):
        demo(seeds={"couch": 1})


# ---------------------------------------------------------------- images

def test_image_modes(tmp_path: Path) -> None:
    grey16 = tmp_path / "g16.png"
    Image.fromarray(np.full((5, 7), 65535, dtype=np.uint16)).save(grey16)
    image = load_image(grey16)
    assert image.shape == (3, 5, 7) and torch.allclose(image, torch.ones_like(image))
    rgba = tmp_path / "a.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(rgba)
    assert torch.allclose(load_image(rgba)[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))  # alpha dropped
    palette = tmp_path / "p.png"
    Image.new("RGB", (4, 4), (0, 0, 255)).convert("P").save(palette)
    assert torch.allclose(load_image(palette)[:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    grey = tmp_path / "l.jpg"
    Image.new("L", (8, 8), 128).save(grey)
    assert load_image(grey).shape == (3, 8, 8)


def test_image_errors(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(big)
    with pytest.raises(UserError) as err:
        load_image(big, max_pixels=50_000)
    assert "60,000 pixels" in str(err.value) and err.value.file == str(big)
    truncated = tmp_path / "t.png"
    truncated.write_bytes(big.read_bytes()[:60])
    with pytest.raises(UserError, match="not a readable image"):
        load_image(truncated)
    with pytest.raises(UserError, match="does not exist"):
        load_image(tmp_path / "none.png")
    with pytest.raises(UserError, match="directory"):
        load_image(tmp_path)
    with pytest.raises(UserError):
        decode_image_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, name="embedded")


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path: Path) -> None:
    # A real 8x8 PNG whose IHDR is patched to claim 100000 x 100000 pixels (CRC fixed up).
    import struct
    import zlib
    small = tmp_path / "small.png"
    Image.new("RGB", (8, 8)).save(small)
    data = bytearray(small.read_bytes())
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bytes(data))
    for limit in (64_000_000, 10**12):  # our limit, then PIL's own bomb guard
        with pytest.raises(UserError, match="over the limit|too large") as err:
            load_image(bomb, max_pixels=limit)
        assert err.value.file == str(bomb)
