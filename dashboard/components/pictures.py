"""Images on a page: tile grids, PNG bytes, class names, bounded uploads."""

from __future__ import annotations

import io

import numpy as np


def tile_grid(images: np.ndarray, rows: int, labels: list[str], ok: list[bool],
              scale: int = 1, frame: str | None = None) -> np.ndarray:  # fmt: skip
    """(n, 3, H, W) uint8 images -> one (R, C) mosaic: each tile framed green (ok) or red (or
    all in `frame`), with its label written in its corner. One picture instead of dozens of
    elements."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    n, _, h, w = images.shape
    cols = -(-n // rows)
    pad, th, tw = 3, h * scale, w * scale
    canvas = Image.new("RGB", (cols * (tw + 2 * pad + 2), rows * (th + 2 * pad + 2)), "white")
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        r, c = divmod(i, cols)
        x0, y0 = c * (tw + 2 * pad + 2), r * (th + 2 * pad + 2)
        tile = Image.fromarray(np.ascontiguousarray(images[i].transpose(1, 2, 0)))
        draw.rectangle([x0, y0, x0 + tw + 2 * pad - 1, y0 + th + 2 * pad - 1],
                       fill=frame or ("#2ca02c" if ok[i] else "#d62728"))  # fmt: skip
        canvas.paste(tile.resize((tw, th), Image.Resampling.NEAREST), (x0 + pad, y0 + pad))
        if not labels[i]:
            continue
        box = draw.textbbox((x0 + pad + 2, y0 + pad), labels[i], font=font)
        draw.rectangle([x0 + pad, y0 + pad, box[2] + 2, box[3] + 2], fill="white")
        draw.text((x0 + pad + 2, y0 + pad), labels[i], fill="black", font=font)
    return np.asarray(canvas)


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """(H, W, 3) or (3, H, W) uint8 -> PNG bytes, optionally upscaled with nearest neighbour."""
    from PIL import Image

    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.transpose(image, (1, 2, 0))
    im = Image.fromarray(np.ascontiguousarray(image))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def class_names(status: dict, n: int) -> list[str]:
    """The run's class names (written when its data loaded), or 0..n-1."""
    classes = status.get("classes") or (status.get("summary") or {}).get("classes")
    if isinstance(classes, list) and len(classes) >= n:
        return [str(c) for c in classes]
    return [str(i) for i in range(n)]


MAX_UPLOAD_MB = 10


def read_image_upload(upload, max_mb: int = MAX_UPLOAD_MB):
    """An uploaded file (anything with .name, .size, .getvalue()) as a (3, H, W) uint8 tensor;
    ValueError naming the file when it is too large or not an image."""
    import torch
    from PIL import Image, UnidentifiedImageError

    from engine.data.sources import pil_to_rgb

    if upload.size > max_mb * 2**20:
        raise ValueError(f"{upload.name} is {upload.size / 2**20:.1f} MB; the limit is {max_mb} MB")
    try:
        with Image.open(io.BytesIO(upload.getvalue())) as im:
            if im.width * im.height > 40_000_000:
                raise ValueError(f"{im.width}x{im.height} pixels is too large")
            arr = pil_to_rgb(im)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{upload.name} is not an image this page can read ({e})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)
