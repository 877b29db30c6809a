#!/usr/bin/env python3
"""Cross-check the committed decode fixtures against this machine's Pillow.

tests/fixtures/images/decode/cases.json lists each image with the pixels Pillow gave when the
fixtures were made (<name>.pil.png: Image.open(file).convert("RGB")); test_image_formats.c holds
vlrun's decoders to those pixels exactly. Run where another Pillow is installed (the GPU machine
has Pillow 12 with its own libjpeg-turbo, libpng, libwebp, libtiff): every case whose pixels
differ there is printed, so a fixture that depends on the Pillow version is known.

usage: check_decode_fixtures.py [DECODE_DIR]      exit 1 if any case differs
"""
import json
import os
import sys

import numpy as np
import PIL
from PIL import Image


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "fixtures", "images",
                                                                "decode")
    cases = json.load(open(os.path.join(folder, "cases.json")))["cases"]
    differ = 0
    for c in cases:
        with Image.open(os.path.join(folder, c["file"])) as im:
            got = np.asarray(im.convert("RGB"))
        want = np.asarray(Image.open(os.path.join(folder, c["pil_rgb"])).convert("RGB"))
        if got.shape != want.shape or not np.array_equal(got, want):
            differ += 1
            diff = np.abs(got.astype(int) - want.astype(int)).max() if got.shape == want.shape else -1
            print(f"DIFFERS {c['file']} ({c['what']}): shape {got.shape} vs {want.shape}, "
                  f"max level difference {diff}")
    print(f"Pillow {PIL.__version__}: {len(cases) - differ} of {len(cases)} decode fixtures "
          f"give the committed pixels")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
