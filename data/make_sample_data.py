"""Writes the sample datasets shipped in data/ (deterministic; rerun to regenerate).

    python data/make_sample_data.py

alpaca_sample.jsonl: 320 instruction rows (small, learnable tasks: arithmetic, word games,
sorting, opposites), some with a system prompt or a history turn. sharegpt_sample.json: 120
multi-turn conversations in the from/value layout, some with a system turn. The tasks are simple
on purpose: a tiny model trained for a minute shows a clearly falling loss on them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

WORDS = [
    "apple", "river", "garden", "planet", "window", "silver", "forest", "candle", "bridge", "mountain",
    "ocean", "pencil", "rocket", "castle", "dragon", "meadow", "orange", "pepper", "rabbit", "summer",
    "winter", "thunder", "violin", "yellow", "zebra", "anchor", "basket", "cookie", "desert", "engine",
    "feather", "guitar", "harbor", "island", "jacket", "kitten", "lemon", "marble", "needle", "oyster",
    "parrot", "quartz", "saddle", "tunnel", "umbrella", "valley", "walnut", "button", "cactus", "dolphin",
]
OPPOSITES = {
    "hot": "cold", "big": "small", "fast": "slow", "happy": "sad", "light": "dark", "early": "late",
    "open": "closed", "full": "empty", "high": "low", "strong": "weak", "young": "old", "loud": "quiet",
    "wet": "dry", "hard": "soft", "near": "far", "first": "last", "rich": "poor", "thick": "thin",
}
SENTENCES = [
    "the cat sleeps on the warm mat", "a small boat crossed the lake", "we planted seeds in the spring",
    "the train leaves at noon", "birds sing before sunrise", "she painted the fence blue",
    "the library opens every morning", "my friend bakes fresh bread", "rain fell all night long",
    "the children built a sand castle",
]
SYSTEMS = ["You are a helpful assistant.", "You are a careful tutor who answers briefly.",
           "Answer in one short sentence."]


def arithmetic(rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    if rng.random() < 0.5:
        return f"What is {a} plus {b}?", "", f"{a} plus {b} is {a + b}."
    a, b = max(a, b), min(a, b)
    return f"What is {a} minus {b}?", "", f"{a} minus {b} is {a - b}."


def reverse_word(rng: random.Random) -> tuple[str, str, str]:
    w = rng.choice(WORDS)
    return "Reverse the letters of the word.", w, w[::-1]


def capitals(rng: random.Random) -> tuple[str, str, str]:
    s = rng.choice(SENTENCES)
    return "Write the sentence in capital letters.", s, s.upper()


def count_letters(rng: random.Random) -> tuple[str, str, str]:
    w = rng.choice(WORDS)
    return f"How many letters are in the word '{w}'?", "", f"The word '{w}' has {len(w)} letters."


def sort_numbers(rng: random.Random) -> tuple[str, str, str]:
    nums = rng.sample(range(1, 60), rng.randint(3, 6))
    return ("Sort these numbers from smallest to largest.", ", ".join(map(str, nums)),
            ", ".join(map(str, sorted(nums))))


def opposite(rng: random.Random) -> tuple[str, str, str]:
    w, o = rng.choice(list(OPPOSITES.items()))
    return f"What is the opposite of '{w}'?", "", f"The opposite of '{w}' is '{o}'."


TASKS = [arithmetic, reverse_word, capitals, count_letters, sort_numbers, opposite]


def alpaca_rows(n: int, rng: random.Random) -> list[dict]:
    rows = []
    for i in range(n):
        instruction, inp, output = TASKS[i % len(TASKS)](rng)
        row = {"instruction": instruction, "input": inp, "output": output}
        if i % 5 == 0:
            row["system"] = rng.choice(SYSTEMS)
        if i % 7 == 0:
            q, _, a = arithmetic(rng)
            row["history"] = [[q, a]]
        rows.append(row)
    return rows


def sharegpt_rows(n: int, rng: random.Random) -> list[dict]:
    rows = []
    for i in range(n):
        turns = []
        if i % 4 == 0:
            turns.append({"from": "system", "value": rng.choice(SYSTEMS)})
        a, b = rng.randint(2, 50), rng.randint(2, 50)
        turns += [
            {"from": "human", "value": f"What is {a} plus {b}?"},
            {"from": "gpt", "value": f"{a} plus {b} is {a + b}."},
            {"from": "human", "value": "And if you double that?"},
            {"from": "gpt", "value": f"Doubling {a + b} gives {2 * (a + b)}."},
        ]
        if i % 3 == 0:
            w = rng.choice(WORDS)
            turns += [{"from": "human", "value": f"Now reverse the word '{w}'."},
                      {"from": "gpt", "value": f"'{w}' reversed is '{w[::-1]}'."}]
        rows.append({"conversations": turns})
    return rows


def main() -> None:
    rng = random.Random(20261123)
    with open(HERE / "alpaca_sample.jsonl", "w") as f:
        for row in alpaca_rows(320, rng):
            f.write(json.dumps(row) + "\n")
    (HERE / "sharegpt_sample.json").write_text(json.dumps(sharegpt_rows(120, rng), indent=1) + "\n")


if __name__ == "__main__":
    main()
