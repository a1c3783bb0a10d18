"""Notebook 05's figures that carry their own verdict: the paper's Figure 5 with its collapse check
drawn on it, the variant study by source set and method, and the fixed model's latent plane with the
overlays' points.

Every number written on them is computed here from what they draw; they are sized to be read at
GitHub's width (`plots.PAGE_WIDTH`) with text of 9 pt or more."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from vae_overlay import overlay, overlay_methods, overlay_study, plots

GREY_LEVELS = 255  # an 8-bit image's grey levels per unit of intensity


def decode_distances(sources, decodes) -> dict:
    """How alike decodes (n, h, w, 1) are, in grey levels (0-255): `spread`, the largest difference
    of one pixel between any two of them, and `to_mean` (n,), each one's mean absolute difference
    from `mean`, the sources' pixel mean (what a collapsed VAE decodes; the method "pixel mean")."""
    decodes = np.asarray(decodes, np.float64)
    mean = overlay_methods.combine("pixel mean", sources)
    spread = max((float(np.abs(a - b).max()) for a in decodes for b in decodes), default=0.0)
    to_mean = np.abs(decodes - mean).reshape(len(decodes), -1).mean(axis=1)
    return {"mean": mean, "spread": GREY_LEVELS * spread, "to_mean": GREY_LEVELS * to_mean}


def collapse_figure(sources, names, decodes, decode_names, report: dict, title: str):
    """The paper's Figure 5 with its check on the figure: the sources and, framed in red, their
    pixel mean on top; the decodes below, each captioned with its distance from that mean; the title
    adds the model's latent check (`diagnostics.latent_report`: clusters, verdict, the closest
    pair's separation) and how far apart the decodes are (`decode_distances`). A collapsed model's
    decodes are called one image. Returns the figure."""
    alike = decode_distances(sources, decodes)
    k, n = len(sources), len(decodes)
    columns = max(k + 1, n)
    fig, axes = plt.subplots(2, columns, figsize=(2.25 * columns, 6.0), squeeze=False)
    panels = [(axes[0, i], sources[i], name) for i, name in enumerate(names)]
    panels += [(axes[0, k], alike["mean"], "pixel mean of the sources")]
    panels += [
        (axes[1, j], decodes[j], f"{name}\n{d:.1f} grey levels from the mean")
        for j, (name, d) in enumerate(zip(decode_names, alike["to_mean"]))
    ]
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in panels:
        ax.axis("on")
        ax.imshow(np.asarray(image)[..., 0], cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(caption, fontsize=9)
    for spine in axes[0, k].spines.values():
        spine.set(color="tab:red", linewidth=3)
    clusters, verdict = report["n_clusters"], report["verdict"]
    check = (
        f"latent check: {clusters} cluster{'s' if clusters != 1 else ''} for {report['n_sources']} "
        f"sources, {verdict} (closest pair {min(report['min_ratio'], 999):.2f} sd apart)"
    )
    if verdict == "collapsed":
        found = (
            f"so the {n} decodes are one image: at most {alike['spread']:.1f} grey levels apart, "
            f"{alike['to_mean'].mean():.1f} from the sources' pixel mean (red)"
        )
    else:
        found = (
            f"the {n} decodes differ by up to {alike['spread']:.0f} grey levels and lie "
            f"{alike['to_mean'].mean():.1f} from the sources' pixel mean (red) on average"
        )
    fig.suptitle(f"{title}\n{check}\n{found}", fontsize=10)
    fig.tight_layout()
    return fig


def variant_figure(
    variants: list[dict],
    methods=("latent sum", "offset", "decoded composite"),
    score: str = "contrast",
    score_name: str = "contrast retention",
):
    """The variant study (`overlay_study.summarize` by sources and variant) with one panel per
    source set (in `overlay_study.SOURCE_SETS`' order): a row per variant (in `overlay.VARIANTS`'
    order, the paper's recipe first) and a bar per method, coloured alike in every panel: its
    `score` minus the pixel mean's with the 95 % interval over seeds x overlays, on one shared x
    axis. The title counts, per method, the configurations whose interval lies wholly above the
    pixel mean. Returns the figure."""
    order, known = list(overlay.VARIANTS), list(overlay_study.SOURCE_SETS)
    place = {
        name: (known.index(name) if name in known else len(known), name)
        for s in variants
        for name in [s["sources"]]
    }
    sets = sorted(place, key=place.get) or ["(no runs yet)"]
    groups = [
        sorted(
            (s for s in variants if s["sources"] == name),
            key=lambda s: order.index(s["variant"]) if s["variant"] in order else len(order),
        )
        for name in sets
    ]
    height = 2.0 + 0.62 * max([len(group) for group in groups] + [1])
    fig, axes = plt.subplots(1, len(sets), figsize=(11.2, height), squeeze=False)
    for ax, name, group in zip(axes[0], sets, groups):
        ends = [
            np.reshape(
                [[s[f"{score}|{m}|{end}"] for m in methods] for s in group], (-1, len(methods))
            )
            for end in ("diff", "low", "high")
        ]
        plots.forest(
            [s["variant"] for s in group],
            *ends,
            zero_label="pixel mean",
            annotate=None,
            series=methods,
            ax=ax,
            title=f"{name}: {sum(s['runs'] for s in group)} runs",
            xlabel=f"{score_name} minus the pixel mean's",
        )
    low = min(ax.get_xlim()[0] for ax in axes[0])
    high = max(ax.get_xlim()[1] for ax in axes[0])
    for j, (ax, group) in enumerate(zip(axes[0], groups)):
        ax.set_xlim(low, high)
        if j and [s["variant"] for s in group] == [s["variant"] for s in groups[0]]:
            ax.tick_params(axis="y", labelleft=False)  # the same rows as the panel on the left
    above = ", ".join(f"{m} {sum(s[f'{score}|{m}|low'] > 0 for s in variants)}" for m in methods)
    fig.suptitle(
        f"Figure 5c: the variant study, {score_name} minus the pixel mean's (95 % interval over "
        "seeds x overlays)\nconfigurations whose interval lies above the pixel mean, of "
        f"{len(variants)}: {above}",
        fontsize=10,
    )
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(methods), fontsize=10, frameon=False)
    fig.tight_layout(rect=(0, 0.4 / height, 1, 1))
    return fig


def latent_plane_figure(plane: dict, names, combo_names, title: str):
    """The decoded latent plane of `overlay_experiment.latent_plane` with gutters between its tiles,
    the sources' cluster centres (large coloured discs), z_bg (black square), the latent sums
    (yellow crosses) and offset sums (yellow plus signs), each sum labelled with its overlay (joined
    by a thin line) where the label covers no other label or marker (`plots.place_labels`); the
    legend below the plane; square tiles, 7.2 inches on the longer axis. Returns the figure."""
    n1, n2 = plane["tiles"].shape[:2]
    # inches per tile: 0.8 (64 px at 80 dpi) for 9 tiles on the longer axis
    side = 7.2 / max(n1, n2)
    fig, ax = plt.subplots(figsize=(max(1.4 + side * n1, 7.6), 2.3 + side * n2))
    plots.decoded_grid(ax, plane["tiles"], plane["z1"], plane["z2"], gutter=2)
    ax.set_aspect("equal")  # the grid's steps are equal on both axes: square tiles
    colours = plt.cm.tab10(np.arange(len(names)))
    # large discs: a ring of colour stays visible under a sum drawn on them
    for i, name in enumerate(names):
        ax.scatter(
            *plane["centres"][i],
            s=420,
            color=colours[i],
            edgecolor="k",
            label=f"centre: {name}",
            zorder=3,
        )
    ax.scatter(
        *plane["z_bg"],
        s=120,
        marker="s",
        color="k",
        edgecolor="w",
        label="z_bg: encoded background",
        zorder=4,
    )
    for key, marker, what in (("sums", "X", "latent sum"), ("offsets", "P", "offset sum")):
        ax.scatter(
            *plane[key].T, s=170, marker=marker, color="yellow", edgecolor="k", label=what, zorder=4
        )
    ax.set_title(title, fontsize=10)
    ax.xaxis.label.set_size(10)
    ax.yaxis.label.set_size(10)
    ax.tick_params(labelsize=9)
    ax.locator_params(nbins=5)
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.07),
        ncol=3,
        fontsize=9,
        frameon=False,
        markerscale=0.7,
    )
    fig.tight_layout()
    points = np.concatenate([plane["sums"], plane["offsets"]])
    markers = np.concatenate([plane["centres"], plane["z_bg"][None]])
    plots.place_labels(
        ax,
        points,
        list(combo_names) * 2,
        avoid=markers,
        distance=11,
        fontsize=9,
        zorder=5,
        bbox={"boxstyle": "round,pad=0.15", "fc": "yellow", "ec": "k", "lw": 0.5},
        arrowprops={"arrowstyle": "-", "color": "k", "lw": 0.8},
    )
    return fig


def dimension_figure(dims: list[dict], runs: list[dict], floor: float, methods=None):
    """The latent-dimension study: per method its fidelity minus the pixel mean's over the
    dimensions (mean and 95 % interval, `overlay_study.summarize`'s `dims`), and every run's final
    reconstruction term above a perfect one (`floor`) with the mean and interval per dimension."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for j, method in enumerate(methods or overlay_study.SHOWN):
        found = np.array(
            [
                [s["latent_dim"]] + [s[f"fidelity|{method}|{e}"] for e in ("diff", "low", "high")]
                for s in dims
            ]
        )
        if len(found):
            left.errorbar(
                found[:, 0] * 1.04 ** (j - 1.5),
                found[:, 1],
                fmt="-o",
                capsize=3,
                label=method,
                yerr=[found[:, 1] - found[:, 2], found[:, 3] - found[:, 1]],
            )
    left.axhline(0, color="k", lw=1, label="pixel mean")
    right.scatter(
        [r["latent_dim"] for r in runs],
        [r["final_reconstruction"] - floor for r in runs],
        color="C3",
        s=16,
        alpha=0.6,
        label="one run",
    )
    if dims:
        recon = np.array(
            [
                [s["latent_dim"]]
                + [s[f"reconstruction_{e}"] - floor for e in ("mean", "low", "high")]
                for s in dims
            ]
        )
        right.errorbar(
            recon[:, 0] * 1.06,
            recon[:, 1],
            yerr=[recon[:, 1] - recon[:, 2], recon[:, 3] - recon[:, 1]],
            fmt="o",
            color="k",
            capsize=3,
            label="mean, 95 % interval",
        )
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks([2, 4, 8, 16], ["2", "4", "8", "16"])
        ax.set_xlabel("latent dimension")
        ax.legend(fontsize=9)
    left.set_ylabel("fidelity minus the pixel mean's")
    right.set_ylabel("reconstruction above perfect (nats/image)")
    variant = runs[0]["variant"] if runs else "-"
    fig.suptitle(f"Latent dimension ({variant}, paper trio, {len(runs)} runs)", fontsize=10)
    fig.tight_layout()
    return fig


def sets_figure(
    rows: list[dict], methods=("latent sum", "decoded composite"), score: str = "contrast"
):
    """The source-set study per arm and variant: left, each source set's share of seeds that
    separated its sources (one dot per set); right, each set's `score` of `methods` minus the pixel
    mean's (seeds and overlays averaged within the set), with the mean over sets and its 95 %
    interval (`arm_verdicts`, the set as the unit). Returns the figure."""
    means = overlay_study.set_means(rows, score, ("pixel mean", *methods))
    verdicts = overlay_study.arm_verdicts(rows, score, methods=methods)
    labels = [f"{v['arm']}, {v['variant']} ({v['sets']} sets)" for v in verdicts]
    n = len(verdicts)
    fig, axes = plt.subplots(
        1,
        2,
        figsize=(11.2, 1.6 + 0.55 * max(n, 1)),
        sharey=True,
        gridspec_kw={"width_ratios": (1, 2)},
    )
    rng = np.random.default_rng(0)
    for i, verdict in enumerate(verdicts):
        y = n - 1 - i
        group = [
            m for m in means if m["arm"] == verdict["arm"] and m["variant"] == verdict["variant"]
        ]
        jitter = rng.uniform(-0.15, 0.15, len(group))
        axes[0].scatter([g["separated_share"] for g in group], y + jitter, s=18, color="0.3")
        for j, method in enumerate(methods):
            offset = 0.22 * (j - (len(methods) - 1) / 2)
            diffs = [g[method] - g["pixel mean"] for g in group]
            axes[1].scatter(diffs, y + offset + jitter / 3, s=14, color=f"C{j}", alpha=0.5)
            if f"{method}|diff" in verdict:
                low, high = verdict[f"{method}|low"], verdict[f"{method}|high"]
                axes[1].errorbar(
                    verdict[f"{method}|diff"],
                    y + offset,
                    xerr=[[verdict[f"{method}|diff"] - low], [high - verdict[f"{method}|diff"]]],
                    fmt="D",
                    color=f"C{j}",
                    ms=6,
                    capsize=3,
                )
    for j, method in enumerate(methods):
        axes[1].errorbar(
            [], [], xerr=[], fmt="D", color=f"C{j}", label=f"{method}: mean over sets, 95 %"
        )
    axes[1].axvline(0, color="k", lw=1)
    axes[0].set_yticks(np.arange(n)[::-1], labels, fontsize=10)
    axes[0].set_xlim(-0.05, 1.05)
    axes[0].set_xlabel("share of seeds separated, per set", fontsize=10)
    axes[1].set_xlabel(f"{score} retention minus the pixel mean's, per set", fontsize=10)
    handles, names = axes[1].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower right", ncol=len(methods), fontsize=9, frameon=False)
    for ax in axes:
        ax.tick_params(labelsize=9)
        for y in range(n - 1):
            ax.axhline(y + 0.5, color="0.85", lw=0.8, zorder=0)
    sets = len({m["sources"] for m in means})
    fig.suptitle(
        f"{sets} source sets, each trained with every variant: is each source its own cluster, and"
        " does the overlay keep the defects?",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
