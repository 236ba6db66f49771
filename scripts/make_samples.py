"""Write the sample business data files in jobcron/data/samples/ (fixed seeds: the same bytes every run).

    .venv/bin/python scripts/make_samples.py

sales.csv                orders with dates, regions, products, revenue (UTF-8 with a BOM, CRLF, quoted commas)
inventory.tsv            weekly stock snapshots of European warehouses (Latin-1, decimal commas, dd/mm/yyyy)
subscriptions.json       a JSON array of SaaS subscriptions with a nested account object
support_tickets.jsonl    JSON lines of support tickets with timestamps
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "jobcron" / "data" / "samples"


def sales() -> bytes:
    """1,500 orders over 2023-2024: growing volume, a Q4 peak, two bulk orders, units driving shipping cost."""
    rng = random.Random(2023)
    regions = [
        ("North", 0.30, 1.05),
        ("East", 0.25, 1.0),
        ("South", 0.20, 0.95),
        ("West", 0.15, 1.1),
        ("Central", 0.10, 0.9),
    ]
    products = [
        ("Widget, Small", 12.5),
        ("Widget, Large", 24.0),
        ("Gadget Lite", 49.0),
        ("Gadget Pro", 89.0),
        ("Cable Kit", 9.5),
        ("Service Plan", 149.0),
    ]
    channels = [("Online", 0.5), ("Retail", 0.35), ("Partner", 0.15)]
    days = [date(2023, 1, 1) + timedelta(days=i) for i in range(731)]
    # orders grow about 3% a month, with a fourth-quarter peak
    weights = [
        (1.03 ** ((d.year - 2023) * 12 + d.month - 1)) * (1.35 if d.month >= 10 else 1.0) for d in days
    ]
    rows = []
    for order_date in sorted(rng.choices(days, weights, k=1500)):
        region, _, price_factor = rng.choices(regions, [r[1] for r in regions])[0]
        product, base = rng.choice(products)
        channel = rng.choices([c[0] for c in channels], [c[1] for c in channels])[0]
        units = max(1, round(rng.lognormvariate(1.6, 0.6)))
        price = round(base * price_factor * rng.uniform(0.95, 1.05), 2)
        discount = rng.choice([0, 0, 0, 5, 10, 15])
        rows.append([order_date, region, product, channel, units, price, discount])
    for i, units in ((733, 400), (1210, 260)):  # bulk deals: the outliers
        rows[i][4] = units
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(
        [
            "order_id",
            "order_date",
            "region",
            "product",
            "channel",
            "units",
            "unit_price",
            "discount_pct",
            "revenue",
            "shipping_cost",
            "customer_rating",
        ]
    )
    for n, (d, region, product, channel, units, price, discount) in enumerate(rows, 1):
        revenue = round(units * price * (1 - discount / 100), 2)
        shipping = round(
            4.0 + 0.6 * units * rng.uniform(0.6, 1.4) + rng.uniform(0, 8), 2
        )  # parcels cost by the unit
        rating = "" if rng.random() < 0.08 else min(5, max(1, round(rng.gauss(4.1, 0.8))))
        disc = "" if rng.random() < 0.03 else discount
        w.writerow(
            [
                f"SO-{10000 + n}",
                d.isoformat(),
                region,
                product,
                channel,
                units,
                f"{price:.2f}",
                disc,
                f"{revenue:.2f}",
                f"{shipping:.2f}",
                rating,
            ]
        )
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def inventory() -> bytes:
    """26 weekly snapshots x 5 warehouses x 4 categories: stock run down over the half-year."""
    rng = random.Random(2024)
    warehouses = ["Zürich", "Málaga", "Köln", "Besançon", "Göteborg"]
    categories = [("Furniture", 180.0), ("Electronics", 320.0), ("Garden", 45.0), ("Toys", 22.0)]
    lines = ["snapshot_date\twarehouse\tcategory\tstock_units\tstock_value_eur\treorder_level\tdays_of_cover"]
    start = date(2024, 1, 1)
    for week in range(26):
        day = start + timedelta(weeks=week)
        for wh in warehouses:
            for cat, unit_value in categories:
                units = max(0, round(rng.gauss(900 - 18 * week, 60)))
                value = units * unit_value * rng.uniform(0.97, 1.03)
                cover = round(units / max(1.0, rng.gauss(30, 4)), 1)
                value_text = f"{value:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")
                cover_text = f"{cover:.1f}".replace(".", ",")
                lines.append(
                    f"{day:%d/%m/%Y}\t{wh}\t{cat}\t{units}\t{value_text}\t{rng.choice([200, 250, 300])}\t{cover_text}"
                )
    return ("\n".join(lines) + "\n").encode("latin-1")


def subscriptions() -> bytes:
    """360 subscriptions signed up over 2023-2024; mrr = seats x fee; some churned."""
    rng = random.Random(2025)
    plans = [("Basic", 29.0, 0.5), ("Pro", 79.0, 0.35), ("Enterprise", 249.0, 0.15)]
    countries = ["US", "UK", "DE", "FR", "NL", "CA"]
    managers = ["Avery", "Blake", "Casey", "Devon"]
    records = []
    for n in range(1, 361):
        plan, fee, _ = rng.choices(plans, [p[2] for p in plans])[0]
        signup = date(2023, 1, 1) + timedelta(days=int(730 * math.sqrt(rng.random())))
        seats = max(1, round(rng.lognormvariate(1.2 if plan != "Enterprise" else 2.6, 0.5)))
        record = {
            "customer_id": f"C{n:04d}",
            "plan": plan,
            "signup_date": signup.isoformat(),
            "country": rng.choice(countries),
            "seats": seats,
            "monthly_fee": fee,
            "mrr": round(seats * fee, 2),
            "churned": rng.random() < (0.18 if plan == "Basic" else 0.08),
            "account": {"manager": rng.choice(managers), "tier": "key" if seats * fee > 2000 else "standard"},
        }
        if rng.random() < 0.05:
            record["country"] = None
        records.append(record)
    records.sort(key=lambda r: r["signup_date"])
    body = ",\n".join("  " + json.dumps(r) for r in records)
    return f"[\n{body}\n]\n".encode()


def support_tickets() -> bytes:
    """600 tickets over 26 weeks: slower resolutions mean unhappier customers; a few tickets dragged on."""
    rng = random.Random(2026)
    start = datetime(2024, 1, 1, 8, 0)
    priorities = [("low", 0.4, 30.0), ("medium", 0.35, 16.0), ("high", 0.2, 6.0), ("urgent", 0.05, 2.0)]
    out = []
    for n in range(1, 601):
        opened = start + timedelta(minutes=int(rng.random() * 26 * 7 * 24 * 60))
        priority, _, typical = rng.choices(priorities, [p[1] for p in priorities])[0]
        hours = round(typical * rng.lognormvariate(0, 0.45), 1)
        satisfaction = min(5, max(1, round(5.6 - hours / 9 + rng.gauss(0, 0.4))))
        out.append(
            {
                "ticket_id": f"T-{n:05d}",
                "opened_at": opened.isoformat() + "Z",
                "priority": priority,
                "channel": rng.choice(["email", "chat", "phone"]),
                "category": rng.choice(["billing", "login", "bug", "feature request", "shipping"]),
                "resolution_hours": hours,
                "satisfaction": satisfaction,
                "agent": rng.choice(["ana", "ben", "chen", "dara", "eli"]),
            }
        )
    for i, hours in ((123, 410.0), (456, 388.5), (77, 265.0)):  # tickets that fell through the cracks
        out[i]["resolution_hours"] = hours
        out[i]["satisfaction"] = 1
    out.sort(key=lambda r: str(r["opened_at"]))
    return "".join(json.dumps(r) + "\n" for r in out).encode()


FILES = {
    "sales.csv": sales,
    "inventory.tsv": inventory,
    "subscriptions.json": subscriptions,
    "support_tickets.jsonl": support_tickets,
}


def main() -> int:
    """Write every sample file and print its size."""
    OUT.mkdir(parents=True, exist_ok=True)
    for name, make in FILES.items():
        data = make()
        (OUT / name).write_bytes(data)
        print(f"{name:24} {len(data):>8} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
