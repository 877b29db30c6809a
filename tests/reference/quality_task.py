#!/usr/bin/env python3
"""quality_task.py: the synthetic visual tasks of the small trained Qwen2-VL (issue 17), whose
answers are right or wrong: a question about one or two generated pictures, and its one exact
answer of one to four words or digits.

Tasks (the question's words fixed per task, so that the picture alone decides the answer):
  count    1-6 shapes on a grid of cells        "How many shapes are in the picture?"  "4"
  color    one shape                            "What color is the shape?"             "blue"
  shape    one shape                            "What shape is it?"                    "circle"
  where    one shape in a quadrant              "Where is the square?"                 "top left"
  number   a 2-4 digit number, 7-segment digits "What number is written?"              "4827"
  compare  two pictures of 1-6 shapes, unequal  "Which picture has more shapes, the first or
                                                 the second?"                           "first"
Pictures are 112 to 280 pixels a side (multiples of 28: whole 2x2 blocks of 14-pixel patches),
drawn with PIL's rectangle, ellipse and polygon on a light background; no fonts (digits are
seven-segment bars), so the pictures do not depend on what fonts a machine has.

Deterministic: item i of a set with seed S comes from random.Random(S * 1_000_003 + i), so a
set can be regenerated or extended. tests/reference/train_quality_model.py draws its training
items from seed 1; the committed evaluation set (tests/fixtures/quality/) is seed 2.

usage: quality_task.py OUT_DIR [--seed 2] [--per-task 40]
writes OUT_DIR/images/NNNN_K.png and OUT_DIR/items.jsonl, one item a line:
  {"id": N, "task": ..., "images": ["images/NNNN_0.png", ...], "question": ..., "answer": ...}
"""
import argparse
import json
import os
import random

from PIL import Image, ImageDraw

TASKS = ("count", "color", "shape", "where", "number", "compare")
COLORS = {"red": (220, 30, 30), "green": (30, 160, 50), "blue": (40, 70, 220),
          "yellow": (230, 200, 20), "purple": (140, 50, 170), "black": (20, 20, 20)}
SHAPES = ("circle", "square", "triangle")
SIZES = ((112, 112), (168, 112), (112, 168), (168, 168), (224, 168), (168, 224), (224, 224),
         (280, 224))
QUESTIONS = {
    "count": "How many shapes are in the picture?",
    "color": "What color is the shape?",
    "shape": "What shape is it?",
    "where": "Where is the {shape}?",
    "number": "What number is written?",
    "compare": "Which picture has more shapes, the first or the second?",
}
# segments a..g of each digit: a top, b top right, c bottom right, d bottom, e bottom left,
# f top left, g middle
SEGMENTS = {"0": "abcdef", "1": "bc", "2": "abged", "3": "abgcd", "4": "fgbc", "5": "afgcd",
            "6": "afgedc", "7": "abc", "8": "abcdefg", "9": "abcdfg"}


def background(rng, size):
    shade = rng.randint(225, 255)
    tint = [min(255, shade + rng.randint(-8, 8)) for _ in range(3)]
    return Image.new("RGB", size, tuple(tint))


def draw_shape(draw, shape, box, color):
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=color)
    elif shape == "square":
        draw.rectangle(box, fill=color)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=color)


def shape_box(rng, cell):
    """A square box inside cell (x0, y0, x1, y1), 55-85% of its smaller side, placed at random."""
    x0, y0, x1, y1 = cell
    side = int(min(x1 - x0, y1 - y0) * rng.uniform(0.55, 0.85))
    bx = x0 + rng.randint(0, (x1 - x0) - side)
    by = y0 + rng.randint(0, (y1 - y0) - side)
    return (bx, by, bx + side, by + side)


def shapes_picture(rng, n):
    """A picture of n shapes, one per cell of a grid with at least n cells."""
    size = rng.choice(SIZES)
    im = background(rng, size)
    draw = ImageDraw.Draw(im)
    cols = 3 if size[0] >= size[1] else 2
    rows = 2 if size[0] >= size[1] else 3
    cw, ch = size[0] // cols, size[1] // rows
    for c in rng.sample(range(cols * rows), n):
        cell = ((c % cols) * cw, (c // cols) * ch, (c % cols + 1) * cw, (c // cols + 1) * ch)
        draw_shape(draw, rng.choice(SHAPES), shape_box(rng, cell), COLORS[rng.choice(list(COLORS))])
    return im


def one_shape_picture(rng, shape, color, quadrant=None):
    """One shape, anywhere or inside quadrant (row, col) of the picture."""
    size = rng.choice(SIZES)
    im = background(rng, size)
    w, h = size
    if quadrant is None:
        cell = (w // 8, h // 8, w - w // 8, h - h // 8)
    else:
        r, c = quadrant
        cell = (c * w // 2, r * h // 2, (c + 1) * w // 2, (r + 1) * h // 2)
    draw_shape(ImageDraw.Draw(im), shape, shape_box(rng, cell), COLORS[color])
    return im


def number_picture(rng, text):
    """text in seven-segment digits, dark bars on a light background."""
    size = rng.choice([s for s in SIZES if s[0] >= s[1]])
    im = background(rng, size)
    draw = ImageDraw.Draw(im)
    w, h = size
    dw = min(w * 0.8 / len(text), h * 0.45)  # a digit cell's width; its height is 2x
    dh, t = 2 * dw, max(3, int(dw * 0.16))
    x = (w - dw * len(text)) / 2 + rng.uniform(-w * 0.05, w * 0.05)
    y = (h - dh) / 2 + rng.uniform(-h * 0.1, h * 0.1)
    ink = tuple(rng.randint(0, 60) for _ in range(3))
    for ch in text:
        x0, x1 = x + dw * 0.15, x + dw * 0.85
        ym = y + dh / 2
        bars = {"a": (x0, y, x1, y + t), "d": (x0, y + dh - t, x1, y + dh),
                "g": (x0, ym - t / 2, x1, ym + t / 2), "f": (x0, y, x0 + t, ym),
                "b": (x1 - t, y, x1, ym), "e": (x0, ym, x0 + t, y + dh),
                "c": (x1 - t, ym, x1, y + dh)}
        for s in SEGMENTS[ch]:
            draw.rectangle([round(v) for v in bars[s]], fill=ink)
        x += dw
    return im


def make_item(rng, task):
    """(pictures, question, answer) of one item of task."""
    if task == "count":
        n = rng.randint(1, 6)
        return [shapes_picture(rng, n)], QUESTIONS[task], str(n)
    if task == "color":
        color = rng.choice(list(COLORS))
        return [one_shape_picture(rng, rng.choice(SHAPES), color)], QUESTIONS[task], color
    if task == "shape":
        shape = rng.choice(SHAPES)
        color = rng.choice(list(COLORS))
        return [one_shape_picture(rng, shape, color)], QUESTIONS[task], shape
    if task == "where":
        shape, r, c = rng.choice(SHAPES), rng.randint(0, 1), rng.randint(0, 1)
        im = one_shape_picture(rng, shape, rng.choice(list(COLORS)), (r, c))
        answer = ("top" if r == 0 else "bottom") + " " + ("left" if c == 0 else "right")
        return [im], QUESTIONS[task].format(shape=shape), answer
    if task == "number":
        text = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9))
                                                for _ in range(rng.randint(1, 3)))
        return [number_picture(rng, text)], QUESTIONS[task], text
    if task == "compare":
        a, b = rng.sample(range(1, 7), 2)
        return ([shapes_picture(rng, a), shapes_picture(rng, b)], QUESTIONS[task],
                "first" if a > b else "second")
    raise ValueError(f"unknown task {task!r}")


def item(seed, i):
    """Item i of the set with this seed: its task cycles through TASKS."""
    rng = random.Random(seed * 1_000_003 + i)
    task = TASKS[i % len(TASKS)]
    pictures, question, answer = make_item(rng, task)
    return task, pictures, question, answer


def write_set(out_dir, seed, per_task):
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    with open(os.path.join(out_dir, "items.jsonl"), "w") as f:
        for i in range(per_task * len(TASKS)):
            task, pictures, question, answer = item(seed, i)
            names = []
            for k, im in enumerate(pictures):
                name = f"images/{i:04d}_{k}.png"
                im.save(os.path.join(out_dir, name), optimize=True)
                names.append(name)
            f.write(json.dumps(dict(id=i, task=task, images=names, question=question,
                                    answer=answer)) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--per-task", type=int, default=40)
    a = ap.parse_args()
    write_set(a.out_dir, a.seed, a.per_task)


if __name__ == "__main__":
    main()
