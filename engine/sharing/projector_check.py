"""Reads an Embedding Projector folder (what engine.sharing.export.export_projector writes) back, and
checks that its four files agree: the config, the tensors, the metadata and the sprite."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.sharing.export import PROJECTOR_CONFIG, SPRITE_MAX_PX


@dataclass
class Projector:
    """The Embedding Projector's files of a folder, parsed and checked against each other."""

    config: dict[str, list]  # the embedding's fields, each a list (protobuf text format)
    tensors: np.ndarray  # (N, D) float32
    header: list[str]  # metadata columns ([] for a single unnamed column)
    metadata: list[list[str]]  # N rows
    sprite: np.ndarray | None  # (H, W, 3) uint8
    single_image_dim: tuple[int, int] | None  # (width, height) of one thumbnail

    def tile(self, i: int) -> np.ndarray:
        """Point i's thumbnail in the sprite."""
        w, h = self.single_image_dim
        r, c = divmod(i, self.sprite.shape[1] // w)
        return self.sprite[r * h : (r + 1) * h, c * w : (c + 1) * w]


_SKIP = re.compile(r"(?:\s+|#[^\n]*)*")
_OPEN = re.compile(r"(\w+)\s*:?\s*\{")
_FIELD = re.compile(r'(\w+)\s*:\s*("(?:[^"\\\n]|\\.)*"|[^\s{}"#]+)')


def _unescape(escape: re.Match) -> str:
    code = escape[1]
    if code[0] in "01234567":  # octal, as export._quote writes control characters
        return chr(int(code, 8))
    return {"n": "\n", "t": "\t", "r": "\r"}.get(code, code)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None


def parse_text_proto(text: str, source: str) -> dict[str, list]:
    """Protobuf text format (the subset projector configs use): {field: [values]}, nested
    messages as dicts; repeated fields collect their values in order."""
    stack: list[dict[str, list]] = [{}]
    pos = 0
    while (pos := _SKIP.match(text, pos).end()) < len(text):
        if m := _OPEN.match(text, pos):
            child: dict[str, list] = {}
            stack[-1].setdefault(m[1], []).append(child)
            stack.append(child)
        elif m := _FIELD.match(text, pos):
            value = m[2]
            if value.startswith('"'):
                value = re.sub(r"\\([0-7]{1,3}|.)", _unescape, value[1:-1])
            elif re.fullmatch(r"[-+]?\d+", value):
                value = int(value)
            stack[-1].setdefault(m[1], []).append(value)
        elif text[pos] == "}" and len(stack) > 1:
            stack.pop()
            pos += 1
            continue
        else:
            line = text.count("\n", 0, pos) + 1
            raise ValueError(f"{source}: cannot parse line {line}: {text[pos : pos + 40]!r}")
        pos = m.end()
    if len(stack) > 1:
        raise ValueError(f"{source}: a '{{' is never closed")
    return stack[0]


def read_projector(folder: str | Path) -> Projector:
    """Parse a projector folder's files and check that they agree: the tensor's rows and
    tensor_shape, the metadata's rows, the sprite's size against the points and thumbnails.
    Raises ValueError naming the file and the disagreement."""
    folder = Path(folder)
    config_path = folder / PROJECTOR_CONFIG
    parsed = parse_text_proto(_read_text(config_path), str(config_path))
    embeddings = parsed.get("embeddings", [])
    if len(embeddings) != 1 or not isinstance(embeddings[0], dict):
        raise ValueError(f"{config_path}: expected one embeddings {{...}}, found {len(embeddings)}")
    emb = embeddings[0]

    def path_of(key: str, fields: dict[str, list] = emb) -> Path | None:
        values = fields.get(key) or []
        if len(values) != 1 or not isinstance(values[0], str) or not values[0]:
            return None
        path = folder / values[0]  # relative to the config's folder, as TensorBoard reads it
        if not path.resolve().is_relative_to(folder.resolve()):
            raise ValueError(f"{config_path}: {key} {values[0]!r} is outside {folder}")
        if not path.is_file():
            raise ValueError(f"{config_path}: {key} {values[0]!r} does not exist in {folder}")
        return path

    tensor_path = path_of("tensor_path")
    if tensor_path is None:
        raise ValueError(f"{config_path}: no tensor_path")
    try:
        tensors = np.loadtxt(tensor_path, dtype=np.float32, delimiter="\t", ndmin=2)
    except ValueError as e:
        raise ValueError(f"{tensor_path}: not a table of numbers separated by tabs ({e})") from None
    n = len(tensors)
    shape = emb.get("tensor_shape")
    if shape and list(shape) != [n, tensors.shape[1]]:
        raise ValueError(
            f"{config_path}: tensor_shape {shape} but {tensor_path.name} is "
            f"{n} x {tensors.shape[1]}"
        )

    header, rows = [], []
    if (metadata_path := path_of("metadata_path")) is not None:
        lines = _read_text(metadata_path).split("\n")
        lines = lines[:-1] if lines and lines[-1] == "" else lines
        rows = [line.split("\t") for line in lines]
        if rows and len(rows[0]) > 1:  # several columns: the first line names them
            header, rows = rows[0], rows[1:]
        if len(rows) != n:
            raise ValueError(
                f"{metadata_path}: {len(rows)} rows for {n} points in {tensor_path.name}"
            )
        bad = next((i for i, r in enumerate(rows) if len(r) != max(len(header), 1)), None)
        if bad is not None:
            raise ValueError(
                f"{metadata_path}: row {bad + 1} has {len(rows[bad])} columns, the header "
                f"{len(header)}"
            )

    sheet, dim = None, None
    if sprites := emb.get("sprite"):
        sprite = sprites[0]
        if len(sprites) != 1 or not isinstance(sprite, dict):
            raise ValueError(f"{config_path}: expected one sprite {{...}}, found {sprites}")
        dims = sprite.get("single_image_dim", [])
        if len(dims) != 2 or not all(isinstance(v, int) and v > 0 for v in dims):
            raise ValueError(
                f"{config_path}: sprite.single_image_dim must be [width, height], got {dims}"
            )
        image_path = path_of("image_path", sprite)
        if image_path is None:
            raise ValueError(f"{config_path}: sprite has no image_path")
        from PIL import Image

        try:
            with Image.open(image_path) as im:
                sheet = np.asarray(im.convert("RGB"))
        except (OSError, Image.DecompressionBombError) as e:
            raise ValueError(
                f"{config_path}: sprite image {image_path} does not open ({e})"
            ) from None
        height, width = sheet.shape[:2]
        dim = (dims[0], dims[1])
        if width > SPRITE_MAX_PX or height > SPRITE_MAX_PX:
            raise ValueError(
                f"{image_path}: {width}x{height} px, over the projector's {SPRITE_MAX_PX} px"
            )
        if width % dim[0] or height % dim[1]:
            raise ValueError(
                f"{image_path}: {width}x{height} px is not a grid of {dim[0]}x{dim[1]} thumbnails"
            )
        if (room := (width // dim[0]) * (height // dim[1])) < n:
            raise ValueError(f"{image_path}: room for {room} thumbnails, not the {n} points")
    return Projector(emb, tensors, header, rows, sheet, dim)
