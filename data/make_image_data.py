"""Writes the image-text sample data shipped in data/ (deterministic; rerun to regenerate).

    python data/make_image_data.py

images/*.png: 24 small pictures drawn for this project (coloured shapes on a plain background, in
several sizes and aspect ratios, so dynamic tiling cuts them into 1..4 tiles of 56 px and more).
image_sample.json: 96 sharegpt conversations with `<image>` placeholders and an `images` column:
one-image questions (colour, shape, count), two-image comparisons, and multi-turn rows whose
answers follow from the drawing, so a tiny vision-language model can learn them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
BACKGROUNDS = {"white": (245, 245, 245), "black": (15, 15, 15), "grey": (128, 128, 128)}
SHAPES = ["circle", "square", "triangle"]
SIZES = [(56, 56), (112, 56), (56, 112), (120, 90), (84, 84), (160, 60)]


def draw(shape: str, colour: str, background: str, count: int, size: tuple[int, int], rng: random.Random):
    image = Image.new("RGB", size, BACKGROUNDS[background])
    pen = ImageDraw.Draw(image)
    w, h = size
    r = max(4, min(w, h) // 6)
    for k in range(count):
        cx = int((k + 1) * w / (count + 1))
        cy = rng.randint(r + 1, h - r - 1)
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == "circle":
            pen.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            pen.rectangle(box, fill=COLOURS[colour])
        else:
            pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=COLOURS[colour])
    return image


def main() -> None:
    rng = random.Random(0)
    folder = HERE / "images"
    folder.mkdir(exist_ok=True)
    facts = []
    for i in range(24):
        fact = {"file": f"images/shape_{i:02d}.png", "shape": SHAPES[i % 3], "colour": list(COLOURS)[i % 4],
                "background": list(BACKGROUNDS)[i % 3], "count": 1 + i % 3, "size": SIZES[i % len(SIZES)]}
        image = draw(fact["shape"], fact["colour"], fact["background"], fact["count"], fact["size"], rng)
        image.save(HERE / fact["file"])
        facts.append(fact)

    def plural(f):
        return f"{f['count']} {f['colour']} {f['shape']}" + ("s" if f["count"] > 1 else "")

    rows = []
    for i in range(96):
        a, b = facts[i % 24], facts[(i * 7 + 3) % 24]
        kind = i % 4
        if kind == 0:
            answer = f"{plural(a).capitalize()} on a {a['background']} background."
            turns = [("<image>\nWhat is in the picture?", answer)]
            images = [a["file"]]
        elif kind == 1:
            turns = [("<image>\nWhat colour is the shape?", f"The {a['shape']} is {a['colour']}."),
                     ("How many are there?", f"There {'is' if a['count'] == 1 else 'are'} {a['count']}.")]
            images = [a["file"]]
        elif kind == 2:
            more = "first" if a["count"] > b["count"] else "second" if b["count"] > a["count"] else "neither"
            turns = [("First: <image>\nSecond: <image>\nWhich picture has more shapes?",
                      f"The {more} one: {a['count']} against {b['count']}." if more != "neither"
                      else f"Neither: both have {a['count']}.")]
            images = [a["file"], b["file"]]
        else:
            turns = [("Name a colour.", rng.choice(list(COLOURS)).capitalize() + "."),
                     ("<image>\nWhich shape is drawn?", f"A {a['shape']}.")]
            images = [a["file"]]
        conversation = []
        for question, answer in turns:
            conversation += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
        rows.append({"conversations": conversation, "images": images})
    (HERE / "image_sample.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {len(facts)} images to {folder} and {len(rows)} rows to {HERE / 'image_sample.json'}")


if __name__ == "__main__":
    main()
