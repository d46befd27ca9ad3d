"""Ratios and the Markdown table of a bench_peers.py result file."""

from __future__ import annotations


def summarise(network: dict) -> list[dict]:
    """One row per engine and peer of a network: median time, edges/s, categories, ratios.

    Ratios compare with the best exact peer whose categories all matched the truth, and with
    SNICIT when it ran (its categories are said next to it: it is approximate inside)."""
    rows = []
    for key, r in network["results"].items():
        row = {
            "key": key,
            "label": r.get("label", key),
            "kind": r["kind"],
            "exact": r.get("exact", True),
            "seconds": r.get("seconds"),
            "edges_per_second": r.get("edges_per_second"),
            "categories_ok": r.get("categories_ok"),
            "categories": r.get("categories") or {},
            "status": r.get("status", "ran"),
        }
        rows.append(row)
    ok_exact = [r for r in rows if r["kind"] == "peer" and r["exact"] and r["categories_ok"] and r["edges_per_second"]]
    best = max(ok_exact, key=lambda r: r["edges_per_second"], default=None)
    snicit = next((r for r in rows if r["key"] == "snicit" and r["edges_per_second"]), None)
    for r in rows:
        eps = r["edges_per_second"]
        r["vs_best_exact_peer"] = eps / best["edges_per_second"] if eps and best else None
        r["vs_snicit"] = eps / snicit["edges_per_second"] if eps and snicit else None
    network["best_exact_peer"] = best["key"] if best else None
    return rows


def _categories(row: dict) -> str:
    """'match', or how the rows differ from the truth ('differs: 2 extra, 0 missing')."""
    if row["categories_ok"] is None:
        return "not checked"
    if row["categories_ok"]:
        return "match"
    c = row["categories"]
    if "extra" not in c:
        return f"WRONG ({c.get('reason', 'unknown')})"
    return f"WRONG: {c['extra']} extra, {c['missing']} missing"


def _fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def markdown(record: dict) -> str:
    """Per network: each engine and peer's median time, Tedges/s and ratios; then what did not run."""
    lines = []
    for net in record["networks"]:
        rows = summarise(net)
        best = net.get("best_exact_peer")
        lines += [
            f"### {net['name']}: {net['source']}",
            "",
            f"{net['inputs']} inputs, {net['edges']:.4g} edges per inference; truth: {net['truth']['count']} "
            f"categories ({net['truth']['source']}). Best exact peer: {best or 'none with correct categories'}.",
            "",
            "| engine / peer | exact | categories | ms | Tedges/s | x best exact peer | x SNICIT |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for r in rows:
            if r["status"] != "ran":
                lines.append(f"| {r['label']} | {'yes' if r['exact'] else 'no'} | {r['status']} | | | | |")
                continue
            cats = _categories(r)
            lines.append(
                f"| {r['label']} | {'yes' if r['exact'] else 'no'} | {cats} | "
                f"{_fmt(r['seconds'] and r['seconds'] * 1e3, '.2f')} | "
                f"{_fmt(r['edges_per_second'] and r['edges_per_second'] / 1e12, '.2f')} | "
                f"{_fmt(r['vs_best_exact_peer'], '.2f')} | {_fmt(r['vs_snicit'], '.2f')} |"
            )
        lines.append("")
    if record.get("not_run"):
        lines += ["Not run:", ""] + [f"- {item['network']}: {item['reason']}" for item in record["not_run"]] + [""]
    return "\n".join(lines)
