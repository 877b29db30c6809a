#!/usr/bin/env bash
# device_img.sh: on the GPU machine (transformers 5.x, torch, Pillow 12), the image goldens of
# tests/fixtures/images/: the EXIF fixtures' expected pixels under this Pillow
# (make_exif_images.py --expect-only) and transformers' Qwen2-VL pixel_values for every format
# and mode (make_processor_goldens.py). Writes $OUT/img_goldens.tgz (unpack over
# tests/fixtures/images/) and the logs. No build: the C side runs in CI.
set -uo pipefail
out=${OUT:-/tmp/vlrun-img}
mkdir -p "$out"
w=$(mktemp -d)
cp -r tests/fixtures/images/exif "$w/exif"
python3 -c 'import PIL, transformers, torch; print("Pillow", PIL.__version__, "transformers",
    transformers.__version__, "torch", torch.__version__)' >"$out/versions.txt" 2>&1
python3 -c 'import torchvision; print("torchvision", torchvision.__version__)' >>"$out/versions.txt" 2>&1
python3 tests/reference/make_exif_images.py "$w/exif" --expect-only >"$out/exif.log" 2>&1 ||
    echo "exif expectations failed"
python3 tests/reference/make_processor_goldens.py "$w" >"$out/processor.log" 2>&1 ||
    echo "processor goldens failed"
tail -3 "$out/processor.log"
(cd "$w" && tar czf "$out/img_goldens.tgz" exif/*.pil.png exif/cases.json processor_goldens.json \
    transformers_sources.txt)
cp "$w/transformers_sources.txt" "$out/" 2>/dev/null
