"""Overlapping tiles of an image and their recombination with linear blending in the overlaps
(A1111's images.Grid / split_grid / combine_grid; SD upscale and Poor man's outpainting use them)."""
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass
class Grid:
    """tiles: one [y, tile_h, row] per row, row = [[x, tile_w, image], ...] (A1111's layout, which
    scripts index and rewrite in place)."""
    tiles: list = field(default_factory=list)
    tile_w: int = 512
    tile_h: int = 512
    image_w: int = 0
    image_h: int = 0
    overlap: int = 0


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread tile origins covering `length`, consecutive tiles sharing at least `overlap`."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1) if count > 1 else 0
    return [min(int(i * step), length - tile) for i in range(count)]


def split_grid(image: Image.Image, tile_w: int = 512, tile_h: int = 512, overlap: int = 64) -> Grid:
    if overlap >= tile_w or overlap >= tile_h:
        raise ValueError(f"the tile overlap ({overlap} px) must be smaller than the tile size ({tile_w}x{tile_h})")
    grid = Grid([], tile_w, tile_h, image.width, image.height, overlap)
    for y in _starts(image.height, tile_h, overlap):
        row = [[x, tile_w, image.crop((x, y, x + tile_w, y + tile_h))] for x in _starts(image.width, tile_w, overlap)]
        grid.tiles.append([y, tile_h, row])
    return grid


def _blend_into(canvas: np.ndarray, tile: np.ndarray, x: int, y: int, ramp_x: int,
                ramp_y: int, first_col: bool, first_row: bool) -> None:
    """Add `tile` with a weight that rises linearly over the overlap it shares with tiles already
    placed to its left and above, so each overlap is a linear cross-fade."""
    h, w = tile.shape[:2]
    h, w = min(h, canvas.shape[0] - y), min(w, canvas.shape[1] - x)
    wx = np.ones(w)
    if not first_col and ramp_x > 0:
        wx[:ramp_x] = (np.arange(ramp_x) + 0.5) / ramp_x
    wy = np.ones(h)
    if not first_row and ramp_y > 0:
        wy[:ramp_y] = (np.arange(ramp_y) + 0.5) / ramp_y
    mask = np.outer(wy, wx)[..., None]
    region = canvas[y:y + h, x:x + w]
    region *= 1 - mask
    region += tile[:h, :w] * mask


def combine_grid(grid: Grid) -> Image.Image:
    """The tiles put back at their places; where neighbours overlap, the later tile fades in
    linearly across the overlap (left to right, top to bottom)."""
    canvas = np.zeros((grid.image_h, grid.image_w, 3), dtype=np.float64)
    previous_y_end = None
    for row_index, (y, tile_h, row) in enumerate(grid.tiles):
        ramp_y = max(0, previous_y_end - y) if previous_y_end is not None else 0
        previous_x_end = None
        for col_index, (x, tile_w, tile) in enumerate(row):
            ramp_x = max(0, previous_x_end - x) if previous_x_end is not None else 0
            pixels = np.asarray(tile.convert("RGB").resize((tile_w, tile_h)) if tile.size != (tile_w, tile_h)
                                else tile.convert("RGB"), dtype=np.float64)
            _blend_into(canvas, pixels, x, y, ramp_x, ramp_y, col_index == 0, row_index == 0)
            previous_x_end = x + tile_w
        previous_y_end = y + tile_h
    return Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
