"""The typeface of every picture the app draws (annotated images, the evaluation plot).

Pillow's built-in font covers ASCII and little else: ``≥`` in the legend, ``Fahrräder`` or
``自転車`` as class names came out as empty boxes. Noto Sans CJK has glyphs for Latin with
accents, Greek, Cyrillic, the math and currency signs, and Chinese, Japanese and Korean
(one Pan-CJK font, 44,683 characters). It is installed as a Python distribution, pinned in
constraints.txt, into the Lambdas' imaging layer beside Pillow and with the ``counting``
command; its licence (SIL OFL 1.1) is in ``licenses/``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from PIL import ImageFont

# The distribution's import name and its one font file (Noto Sans CJK TC Regular 1.004).
FONT_PACKAGE = "cvttf_NotoSansCJK_Regular"
FONT_FILE = "NotoSansCJKtc-Regular.otf"


def font_path() -> Path:
    """Where the installed font file is."""
    return Path(str(resources.files(FONT_PACKAGE).joinpath(FONT_FILE)))


@cache
def font(size: int) -> ImageFont.FreeTypeFont:
    """The font at ``size`` pixels (loading is lazy in FreeType: no cost per glyph unused)."""
    return ImageFont.truetype(str(font_path()), size)
