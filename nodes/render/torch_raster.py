"""The `torch` backend: a pure-PyTorch reference rasterizer (slow, exact, for tests).

Edge functions over each triangle's pixel bounding box in float64, screen-space
barycentrics made perspective-correct with 1/w, z/w interpolated linearly in
screen space, and a depth test on z/w (ties: lowest triangle id). Triangles are
batched by bounding-box size so there is no Python loop per triangle.
Limitation: triangles with a vertex at w <= 0 (crossing the camera plane) are
skipped instead of clipped; fragments outside -1 <= z/w <= 1 are dropped.
"""
from __future__ import annotations

import torch

from nodes.components.raster import RASTERIZERS, ClipSpaceRasterizer, check_inputs

# Bound on (triangles x bbox pixels) evaluated at once.
_CHUNK_ELEMENTS = 1 << 22


def _fragments_of_group(screen: torch.Tensor, zw: torch.Tensor, winv: torch.Tensor, lo: torch.Tensor,
                        tri_ids: torch.Tensor, box: tuple[int, int], resolution: tuple[int, int]
                        ) -> tuple[torch.Tensor, ...]:
    """Fragments of triangles whose bbox fits in `box` = (rows, cols) pixels, starting at `lo` (x0, y0)."""
    height, width = resolution
    rows, cols = box
    offset_y, offset_x = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    px = lo[:, 0, None, None] + offset_x  # [n, rows, cols]
    py = lo[:, 1, None, None] + offset_y
    p0, p1, p2 = screen[:, 0], screen[:, 1], screen[:, 2]  # [n, 2]

    def edge(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (b[:, 0, None, None] - a[:, 0, None, None]) * (py - a[:, 1, None, None]) - \
            (b[:, 1, None, None] - a[:, 1, None, None]) * (px - a[:, 0, None, None])

    area = ((p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p1[:, 1] - p0[:, 1]) * (p2[:, 0] - p0[:, 0]))
    area = area[:, None, None]
    l0 = edge(p1, p2) / area
    l1 = edge(p2, p0) / area
    l2 = edge(p0, p1) / area
    inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0) & (px < width) & (py < height)
    depth = l0 * zw[:, 0, None, None] + l1 * zw[:, 1, None, None] + l2 * zw[:, 2, None, None]
    inside &= (depth >= -1) & (depth <= 1)
    # Perspective-correct barycentrics.
    q0 = l0 * winv[:, 0, None, None]
    q1 = l1 * winv[:, 1, None, None]
    q2 = l2 * winv[:, 2, None, None]
    total = q0 + q1 + q2
    index = torch.nonzero(inside, as_tuple=True)
    pixel = py[index] * width + px[index]
    return pixel, depth[index], (q0 / total)[index], (q1 / total)[index], tri_ids[index[0]]


class TorchRasterizer(ClipSpaceRasterizer):
    name = "torch"

    def rasterize(self, pos_clip: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        check_inputs(pos_clip, tri, resolution)
        height, width = resolution
        faces = tri.long().cpu()
        outputs = []
        for clip in pos_clip.detach().cpu().double():
            outputs.append(self._rasterize_one(clip, faces, resolution))
        return torch.stack(outputs).reshape(-1, height, width, 4)

    def _rasterize_one(self, clip: torch.Tensor, faces: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        height, width = resolution
        corners = clip[faces]  # [F, 3, 4]
        w = corners[..., 3]
        front = (w > 0).all(dim=1)
        tri_ids = torch.nonzero(front, as_tuple=True)[0]
        corners = corners[tri_ids]
        w = w[tri_ids]
        ndc = corners[..., :2] / w[..., None]
        zw = corners[..., 2] / w
        # Pixel p's centre is at NDC (2p + 1)/W - 1, i.e. screen coordinate p.
        screen = torch.stack([(ndc[..., 0] + 1) * width / 2 - 0.5, (ndc[..., 1] + 1) * height / 2 - 0.5], dim=-1)
        lo = torch.ceil(screen.amin(dim=1)).clamp(min=0).long()  # [n, 2] (x, y)
        hi = torch.floor(screen.amax(dim=1))
        hi = torch.minimum(hi, torch.tensor([width - 1.0, height - 1.0], dtype=hi.dtype)).long()
        extent = hi - lo + 1  # pixels per axis; <= 0 means no pixel centre inside the bbox
        area = ((screen[:, 1, 0] - screen[:, 0, 0]) * (screen[:, 2, 1] - screen[:, 0, 1])
                - (screen[:, 1, 1] - screen[:, 0, 1]) * (screen[:, 2, 0] - screen[:, 0, 0]))
        keep = (extent > 0).all(dim=1) & (area != 0)
        pieces: list[tuple[torch.Tensor, ...]] = []
        if keep.any():
            # Group by bbox size rounded up to a power of two: padding costs at most 4x.
            bucket = torch.ceil(torch.log2(extent.clamp(min=1).double())).long()
            for key in torch.unique(bucket[keep], dim=0):
                members = torch.nonzero(keep & (bucket == key).all(dim=1), as_tuple=True)[0]
                box = (int(extent[members, 1].max()), int(extent[members, 0].max()))
                step = max(1, _CHUNK_ELEMENTS // (box[0] * box[1]))
                for start in range(0, members.numel(), step):
                    chunk = members[start:start + step]
                    pieces.append(_fragments_of_group(screen[chunk], zw[chunk], 1.0 / w[chunk], lo[chunk],
                                                      tri_ids[chunk], box, resolution))
        out = torch.zeros(height * width, 4, dtype=torch.float32)
        if not pieces:
            return out
        pixel, depth, u, v, ids = (torch.cat(parts) for parts in zip(*pieces, strict=True))
        # Depth test: per pixel the smallest z/w, then the lowest triangle id (stable sorts, last key first).
        order = torch.argsort(ids, stable=True)
        order = order[torch.argsort(depth[order], stable=True)]
        order = order[torch.argsort(pixel[order], stable=True)]
        pixel_sorted = pixel[order]
        first = torch.ones_like(pixel_sorted, dtype=torch.bool)
        first[1:] = pixel_sorted[1:] != pixel_sorted[:-1]
        winners = order[first]
        out[pixel[winners]] = torch.stack(
            [u[winners], v[winners], depth[winners], ids[winners].double() + 1], dim=1).float()
        return out


@RASTERIZERS.register("torch")
def torch_rasterizer(device: torch.device) -> TorchRasterizer:
    """The pure-PyTorch reference backend (slow; exact)."""
    return TorchRasterizer()


__all__ = ["TorchRasterizer", "torch_rasterizer"]
