"""Numbers every layer shares: the patch size and the special token ids (one home for each).

``PATCH_SIZE``: pixels per token side of every v1 patch embedding and image tokenizer (arXiv 2504.11171,
a 224 px tile is a 14x14 token grid). The special ids are those of the BERT WordPiece vocabulary the
sequence modalities (coordinates, captions) use: ``[PAD]`` is 0, the 4M span-masking end marker is 3 and
its sentinels start at 4 (4M, arXiv 2312.06647).
"""

from __future__ import annotations

PATCH_SIZE = 16
PAD_ID = 0
EOS_ID = 3
SENTINEL_BASE_ID = 4
