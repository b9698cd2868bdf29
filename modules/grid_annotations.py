"""Labelled grids (X/Y/Z plot, Prompt matrix): text above each column and left of each row,
struck through when a label is inactive. Colours and font come from the grid settings."""
import math
from dataclasses import dataclass

from PIL import Image, ImageColor, ImageDraw, ImageFont

from modules import shared


@dataclass
class GridAnnotation:
    text: str = ""
    is_active: bool = True


def _font(size: int):
    path = shared.opts.font
    if path:
        try:
            return ImageFont.truetype(path, size)
        except OSError as e:
            print(f"Grid font {path} cannot be used ({e}); using the bundled font")
    return ImageFont.load_default(size=size)


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        candidate = f"{line} {word}".strip()
        if line and draw.textlength(candidate, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line]


def draw_grid_annotations(im: Image.Image, width: int, height: int, hor_texts: list, ver_texts: list,
                          margin: int = 0) -> Image.Image:
    """`im` is a grid of len(hor_texts) columns × len(ver_texts) rows of width×height cells with
    `margin` px between them; each *_texts item is a list of GridAnnotation (one line each)."""
    font_size = max(10, (width + height) // 25)
    font = _font(font_size)
    line_spacing = font_size // 2
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    active = ImageColor.getcolor(shared.opts.grid_text_active_color, "RGB")
    inactive = ImageColor.getcolor(shared.opts.grid_text_inactive_color, "RGB")
    background = ImageColor.getcolor(shared.opts.grid_background_color, "RGB")

    def lines_of(annotations, max_width):
        return [(line, a.is_active) for a in annotations for line in _wrap(probe, a.text, font, max_width)]

    hor = [lines_of(texts, width) for texts in hor_texts]
    ver = [lines_of(texts, width * 3 // 4) for texts in ver_texts]
    line_height = font_size + line_spacing
    pad_top = 0 if not any(hor) else max(len(lines) for lines in hor) * line_height + line_spacing * 2
    pad_left = 0 if not any(ver) else int(math.ceil(max(
        (probe.textlength(line, font=font) for lines in ver for line, _ in lines), default=0))) + font_size * 2

    result = Image.new("RGB", (im.width + pad_left, im.height + pad_top), background)
    result.paste(im, (pad_left, pad_top))
    draw = ImageDraw.Draw(result)

    def draw_lines(lines, cx, cy):
        y = cy - len(lines) * line_height / 2
        for line, is_active in lines:
            w = draw.textlength(line, font=font)
            x = cx - w / 2
            draw.text((x, y), line, font=font, fill=active if is_active else inactive)
            if not is_active:  # struck through: this part is absent from the cell's prompt
                mid = y + font_size * 0.6
                draw.line((x, mid, x + w, mid), fill=inactive, width=max(1, font_size // 12))
            y += line_height

    for col, lines in enumerate(hor):
        draw_lines(lines, pad_left + col * (width + margin) + width / 2, pad_top / 2)
    for row, lines in enumerate(ver):
        draw_lines(lines, pad_left / 2, pad_top + row * (height + margin) + height / 2)
    return result


def draw_prompt_matrix(im: Image.Image, width: int, height: int, all_prompts: list[str], margin: int = 0):
    """Columns label the first half of the optional parts, rows the rest (prompt matrix grid)."""
    prompts = all_prompts[1:]
    boundary = math.ceil(len(prompts) / 2)
    hor = [[GridAnnotation(x, is_active=pos & (1 << i) != 0) for i, x in enumerate(prompts[:boundary])]
           for pos in range(1 << boundary)]
    ver = [[GridAnnotation(y, is_active=pos & (1 << i) != 0) for i, y in enumerate(prompts[boundary:])]
           for pos in range(1 << (len(prompts) - boundary))]
    return draw_grid_annotations(im, width, height, hor, ver, margin)


def grid_with_margin(imgs: list, cols: int, margin: int = 0) -> Image.Image:
    """Images in rows of `cols`, each in a cell of the largest size, `margin` px apart."""
    rows = math.ceil(len(imgs) / cols)
    w = max(i.width for i in imgs)
    h = max(i.height for i in imgs)
    background = ImageColor.getcolor(shared.opts.grid_background_color, "RGB")
    grid = Image.new("RGB", (cols * w + (cols - 1) * margin, rows * h + (rows - 1) * margin), background)
    for n, img in enumerate(imgs):
        grid.paste(img, ((n % cols) * (w + margin), (n // cols) * (h + margin)))
    return grid
