"""The HTML evaluation report: the summary table, and for the best, median and worst
examples, spectrograms (PNG, matplotlib) of mixture, reference, estimate and
predicted mask, with audio players for each.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np


def _spectrogram_png(path: Path, panels: list[tuple[str, np.ndarray, bool]], rate: int, hop: int) -> None:
    """One PNG with a row per panel; ``(title, [frames, bins] array, is_mask)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * len(panels)), sharex=True)
    for ax, (title, data, is_mask) in zip(np.atleast_1d(axes), panels):
        img = data.T if is_mask else 20 * np.log10(data.T + 1e-5)
        extent = (0, data.shape[0] * hop / rate, 0, rate / 2000)
        kw = {"vmin": 0, "vmax": 1, "cmap": "magma"} if is_mask else {"vmin": -80, "vmax": float(img.max()), "cmap": "viridis"}
        ax.imshow(img, origin="lower", aspect="auto", extent=extent, **kw)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("kHz")
    np.atleast_1d(axes)[-1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def timeline_png(path: Path, mixture_mag: np.ndarray, rate: int, hop: int, lanes: dict[str, list[dict]]) -> None:
    """The mixture's spectrogram (``[frames, bins]`` magnitudes) with a lane per speaker under it:
    a bar for every timeline segment (:mod:`vsep.timeline`), shaded by its confidence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    duration = mixture_mag.shape[0] * hop / rate
    fig, axes = plt.subplots(1 + len(lanes), 1, figsize=(9, 2.4 + 0.5 * len(lanes)), sharex=True,
                             gridspec_kw={"height_ratios": [4] + [1] * len(lanes)})
    axes = np.atleast_1d(axes)
    img = 20 * np.log10(mixture_mag.T + 1e-5)
    axes[0].imshow(img, origin="lower", aspect="auto", extent=(0, duration, 0, rate / 2000), cmap="viridis",
                   vmin=-80, vmax=float(img.max()))
    axes[0].set_ylabel("kHz")
    axes[0].set_title("mixture, and when each voice speaks", fontsize=9)
    for ax, (name, segs) in zip(axes[1:], lanes.items()):
        for seg in segs:
            ax.axvspan(seg["start"], seg["end"], color="tab:orange", alpha=0.3 + 0.7 * seg["confidence"])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_xlim(0, duration)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _table(summary_md: str) -> str:
    """Markdown tables and headings -> HTML."""
    out, in_table = [], False
    for line in summary_md.splitlines():
        if line.startswith("### "):
            out.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("|---"):
            continue
        elif line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            tag = "th" if not in_table else "td"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
        elif in_table:
            out.append("</table>")
            in_table = False
    if in_table:
        out.append("</table>")
    return "\n".join(out)


def write(out_dir: str, summary: dict[str, Any], summary_md: str, showcases: list[dict[str, Any]], rate: int, hop: int) -> Path:
    """Write ``report.html`` (and ``report/`` with PNG and WAV files) into ``out_dir``.

    ``showcases``: dicts with ``label`` (best/median/worst), ``id``, ``si_sdri``,
    ``audio`` {name: waveform [n]}, ``spectra`` {name: magnitude [frames, bins]}
    and ``mask`` (predicted target mask ``[frames, bins]``).
    """
    import soundfile as sf

    root = Path(out_dir)
    media = root / "report"
    media.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>vsep evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}audio{width:300px}</style></head><body>",
        f"<h1>vsep evaluation: {html.escape(summary['target'])}</h1>",
        f"<p>Model <code>{html.escape(summary['model'])}</code>; {summary['examples']} examples, "
        f"{summary['audio_s']} s of audio at {rate} Hz. Medians; SDR/SIR/SAR/ISR are BSSEval v4 (museval, "
        "one-second windows); SDRi and SI-SDRi are improvements over the unprocessed mixture.</p>",
        _table(summary_md),
    ]
    for case in showcases:
        slug = f"{case['label']}"
        panels = [(f"{name} (dB)", spec, False) for name, spec in case["spectra"].items()]
        panels.append(("predicted target mask", case["mask"], True))
        png = media / f"{slug}.png"
        _spectrogram_png(png, panels, rate, hop)
        parts.append(f"<h2>{html.escape(case['label'])} example: {html.escape(case['id'])} "
                     f"(target SI-SDRi {case['si_sdri']:.1f} dB)</h2>")
        for name, wav in case["audio"].items():
            path = media / f"{slug}_{name}.wav"
            sf.write(path, np.clip(wav, -1, 1), rate, subtype="PCM_16")
            parts.append(f"<p>{html.escape(name)}<br><audio controls src='report/{path.name}'></audio></p>")
        parts.append(f"<img src='report/{png.name}' alt='spectrograms' width='900'>")
    parts.append("</body></html>")
    page = root / "report.html"
    page.write_text("\n".join(parts))
    return page
