"""A synthetic product log in the Amazon 2023 layout, for the "new domain" benchmark (no download).

Writes ``OUT/Synthetic_Goods.jsonl.gz`` (reviews: ``user_id``, ``parent_asin``, ``asin``,
``rating``, ``timestamp`` in ms, ``title``, ``text``) and ``OUT/meta_Synthetic_Goods.jsonl.gz``
(``parent_asin``, ``title``, ``main_category``, ``categories``, ``description``), the files
``llmrec prepare --data OUT`` detects as Amazon reviews.

The log has the structure recommenders look for, so the benchmark measures real work: items
belong to one of ``--groups`` categories with Zipf popularity inside each; a user shops in one to
three categories, mostly in order of a personal drift, and rates their own categories higher.
Seeded: the same arguments give the same files.

    python eval/make_amazon.py --out runs/amazon --users 50000 --items 17000
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np

BRANDS = ["Acme", "Northwind", "Contoso", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne",
          "Tyrell", "Cyberdyne", "Soylent", "Wonka", "Gringotts", "Duff", "Oscorp", "Aperture", "Monarch", "Pied"]
ADJECTIVES = ["Compact", "Deluxe", "Portable", "Classic", "Smart", "Wireless", "Heavy-Duty", "Organic", "Premium",
              "Ultra", "Eco", "Vintage", "Pro", "Mini", "Ergonomic", "Foldable", "Waterproof", "Quiet", "Rapid"]
GROUPS = ["Kitchen", "Garden", "Audio", "Camping", "Office", "Toys", "Beauty", "Pet Supplies", "Cycling", "Baby",
          "Tools", "Lighting", "Fitness", "Crafts", "Automotive", "Bath", "Storage", "Gaming", "Travel", "Music"]
NOUNS = {
    "Kitchen": ["Blender", "Kettle", "Skillet", "Knife Set", "Toaster"], "Garden": ["Hose", "Trowel", "Planter"],
    "Audio": ["Headphones", "Speaker", "Soundbar"], "Camping": ["Tent", "Lantern", "Sleeping Bag", "Stove"],
    "Office": ["Desk Lamp", "Stapler", "Notebook", "Chair"], "Toys": ["Puzzle", "Robot Kit", "Plush Bear"],
    "Beauty": ["Hair Dryer", "Face Cream", "Brush Set"], "Pet Supplies": ["Dog Bed", "Cat Tree", "Leash"],
    "Cycling": ["Bike Light", "Helmet", "Saddle"], "Baby": ["Stroller", "Bottle Set", "Crib Mobile"],
    "Tools": ["Drill", "Wrench Set", "Tape Measure"], "Lighting": ["Floor Lamp", "LED Strip", "Bulb Pack"],
    "Fitness": ["Yoga Mat", "Kettlebell", "Resistance Band"], "Crafts": ["Sewing Kit", "Paint Set", "Glue Gun"],
    "Automotive": ["Car Charger", "Seat Cover", "Tire Gauge"], "Bath": ["Towel Set", "Shower Head", "Bath Mat"],
    "Storage": ["Shelf", "Bin Set", "Drawer Organizer"], "Gaming": ["Controller", "Mouse", "Keyboard"],
    "Travel": ["Suitcase", "Neck Pillow", "Packing Cubes"], "Music": ["Guitar Strings", "Tuner", "Metronome"],
}  # fmt: skip


def make(out: Path, users: int, items: int, groups: int, per_user: float, seed: int) -> dict[str, int]:
    """Write the two files; returns their row counts."""
    rng = np.random.default_rng(seed)
    group_of = rng.integers(0, groups, items)
    catalogue = []
    for i in range(items):
        name = GROUPS[group_of[i] % len(GROUPS)]
        words = [rng.choice(BRANDS), rng.choice(ADJECTIVES), rng.choice(NOUNS[name])]
        title = f"{words[0]} {words[1]} {words[2]} {name[:2].upper()}-{i:05d}"
        catalogue.append({"parent_asin": f"P{i:06d}", "title": title, "main_category": "Synthetic Goods",
                          "categories": [name, f"{name} {words[2]}"],
                          "description": [f"A {words[1].lower()} {words[2].lower()} by {words[0]}."]})  # fmt: skip
    members = [np.flatnonzero(group_of == g) for g in range(groups)]
    # Zipf popularity inside each category
    weights = [1.0 / (1 + np.arange(len(m))) ** 0.9 for m in members]
    weights = [w / w.sum() for w in weights]
    reviews = []
    lengths = np.maximum(2, rng.poisson(per_user - 2, users) + 2)
    for u in range(users):
        liked = rng.choice(groups, rng.integers(1, 4), replace=False)
        n = int(lengths[u])
        cats = rng.choice(liked, n)
        noise = rng.random(n) < 0.1  # a tenth of purchases outside the user's categories
        cats[noise] = rng.integers(0, groups, int(noise.sum()))
        seen: set[int] = set()
        t = 1_500_000_000_000 + int(rng.integers(0, 10**11))
        for c in cats:
            item = int(rng.choice(members[c], p=weights[c]))
            if item in seen:
                continue
            seen.add(item)
            t += int(rng.integers(3_600_000, 30 * 86_400_000))
            rating = float(np.clip(round(rng.normal(4.3 if c in liked else 2.6, 0.9)), 1, 5))
            reviews.append({"rating": rating, "title": "Review", "text": f"Rated {int(rating)} of 5.",
                            "asin": f"B{item:06d}X", "parent_asin": f"P{item:06d}", "user_id": f"U{u:07d}",
                            "timestamp": t, "helpful_vote": 0, "verified_purchase": True})  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("Synthetic_Goods.jsonl.gz", reviews), ("meta_Synthetic_Goods.jsonl.gz", catalogue)):
        with gzip.open(out / name, "wt", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
    return {"reviews": len(reviews), "items": items, "users": users}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=17_000)
    parser.add_argument("--groups", type=int, default=20, help="categories")
    parser.add_argument("--per-user", type=float, default=9.0, help="mean reviews per user")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make(args.out, args.users, args.items, args.groups, args.per_user, args.seed))


if __name__ == "__main__":
    main()
