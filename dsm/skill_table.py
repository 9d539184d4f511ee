"""The twin skill summary of :func:`dsm.skill.skill` as a text table (no dependencies)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def format_table(result: Mapping[str, Any]) -> str:
    """The skill summary as text: one row per map, the station block and the coverage lines."""

    def f(v: Any, w: int, p: int = 4) -> str:
        return f"{v:>{w}.{p}f}" if isinstance(v, float) else f"{'—':>{w}}"

    width = max([14, *(len(k) + 1 for k in result["scores"])])
    lines = [f"{'map':<{width}} {'n':>10} {'RMSE':>8} {'R':>7} {'ubRMSE':>8} {'bias':>8} {'cell R':>7} "
             f"{'RMSE cm':>8} {'RMSE an':>8} {'temp R':>7} {'an. cell R':>10}"]
    for k, s in result["scores"].items():
        lines.append(f"{k:<{width}} {s['n']:>10d} {f(s['rmse'], 8)} {f(s['r'], 7, 3)} {f(s['ubrmse'], 8)} "
                     f"{f(s['bias'], 8)} {f(s.get('cell_r'), 7, 3)} {f(s.get('rmse_cell_mean'), 8)} "
                     f"{f(s.get('rmse_anomaly'), 8)} {f(s.get('temporal_r_median'), 7, 3)} "
                     f"{f(s.get('anomaly_cell_r'), 10, 3)}")
    lines.append("(RMSE cm: of the SMAP cell means; RMSE an: of the within-cell anomalies; temp R: median "
                 "per-pixel temporal R; an. cell R: within-cell R of the daily anomalies)")
    st = result.get("stations")
    if st:
        pct = f"{100 * st['confidence']:.0f} %"
        lines.append(f"stations: temporal R at {st['n_stations']} stations ({pct} bootstrap intervals, "
                     f"{st['n_boot']} resamples)")
        def ci(v: Any) -> str:
            return f"[{v[0]:.3f}, {v[1]:.3f}]" if v and None not in v else "[—]"

        rows = [*st["maps"].items(), *((f"{k}_all", s) for k, s in st.get("all_days", {}).items())]
        for k, s in rows:
            lines.append(f"  {k:<{width}} median {f(s['station_r_median'], 6, 3)} {ci(s['station_r_median_ci'])}"
                         f"   mean {f(s['station_r_mean'], 6, 3)} {ci(s['station_r_mean_ci'])}")
        if st.get("all_days"):
            lines.append("  (<map>_all: each product on all its station-days, SMAP or not; the others on the "
                         "station-days every map covers)")
    coverage = result.get("coverage") or {}
    if "empirical" in coverage:  # a summary of the single-product format before several maps
        coverage = {"product": coverage}
    for k, c in coverage.items():
        if c.get("empirical") is None:
            lines.append(f"{k}: no pixel-day with sm_unc")
            continue
        nominal = f"nominal {100 * c['nominal']:.0f} %" if c.get("nominal") is not None else "nominal unknown"
        lines.append(f"{k}: sm +- sm_unc contains the truth on {100 * c['empirical']:.1f} % of {c['n']} "
                     f"pixel-days ({nominal})")
        for name, b in c.get("by_origin", {}).items():
            if not b["n"]:
                continue
            cov = f"{100 * b['coverage']:.1f} %" if b["coverage"] is not None else "—"
            lines.append(f"    {name:<26} {cov:>7} of {b['n']} pixel-days")
    return "\n".join(lines)


__all__ = ["format_table"]
