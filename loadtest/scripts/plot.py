"""Plots publish-to-receive latency percentiles against load from latency-vs-load.sh's JSON lines.

    python3 loadtest/scripts/plot.py .run/latency-vs-load.jsonl docs/benchmarks/latency-vs-load.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
servers = sorted({r["server"] for r in rows})
fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharex=True)
for ax, (key, label) in zip(axes, [("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")]):
    for server in servers:
        pts = sorted((r["rate"], r[key]) for r in rows if r["server"] == server)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=server)
    ax.set_title(f"publish → receive, {label}")
    ax.set_xlabel("messages per second")
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
axes[0].legend()
fig.suptitle("One message per user at a fixed rate, one 2-core box (load generator included).\n"
             "herald: stored notifications (api → Postgres → Redis → gateway); herald-events: live events "
             "(api → Redis → gateway); fastapi_ws: in memory; python/node socketio: events through Redis",
             fontsize=8)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
print(f"wrote {sys.argv[2]}")
