"""How far a zip (a run zip, an .npz snapshot) may unpack: a small file can declare gigabytes
of zeros. Checked from the central directory before anything is unpacked."""

from __future__ import annotations

import zipfile

# Unpacked : packed, held per member and for the whole zip. Checkpoints and snapshots barely
# shrink and metrics deflate about 6:1; a zip of zeros, a decompression bomb, reaches 1000:1.
# Only what unpacks to more than RATIO_FREE_BYTES is held to it: the confusion matrix of 1,000
# classes over a small snapshot (8 MB, nearly all zeros) deflates to 660:1.
MAX_COMPRESSION_RATIO = 200
RATIO_FREE_BYTES = 32 * 2**20


def unpack_ratio_problem(
    infos: list[zipfile.ZipInfo], packed_bytes: int
) -> tuple[str, zipfile.ZipInfo | None] | None:
    """(why, the member or None for the whole zip) when the central directory says a member,
    or the whole zip of `packed_bytes`, unpacks to more than MAX_COMPRESSION_RATIO times its
    packed size (above RATIO_FREE_BYTES); None when it does not. Also used for .npz files."""
    for info in infos:
        if info.file_size > max(RATIO_FREE_BYTES, MAX_COMPRESSION_RATIO * info.compress_size):
            return (f"{info.compress_size:,} bytes unpack to {info.file_size:,}, over the limit "
                    f"of {MAX_COMPRESSION_RATIO}:1 (a decompression bomb?)", info)  # fmt: skip
    total = sum(i.file_size for i in infos)
    if total > max(RATIO_FREE_BYTES, MAX_COMPRESSION_RATIO * packed_bytes):
        return (f"its {packed_bytes:,} bytes unpack to {total:,}, over the limit of "
                f"{MAX_COMPRESSION_RATIO}:1 (a decompression bomb?)", None)  # fmt: skip
    return None
