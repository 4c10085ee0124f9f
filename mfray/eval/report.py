"""Reports: metric tables (Markdown + CSV), real-vs-simulated trajectory plots, a radar chart."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mfray.eval.evaluate import (
    DEFAULT_MAX_FAILURE_RATE, LOWER_IS_BETTER, METRICS, TRAJECTORY_METRICS, method_failures, summarise, summarise_events,
)
from mfray.eval.agreement_record import TEST_SET_NAMES, agreement_rows, measure_command
from mfray.eval.intervals import MEAN, change_intervals
from mfray.eval.labels import DIMENSIONS
from mfray.eval.metrics import label_shares, nearest_windows
from mfray.eval.noise import METRICS as FLOOR_METRICS
from mfray.eval.nll import nll_note

METRIC_TITLES = {"kl": "KL divergence", "wasserstein": "Wasserstein distance", "dtw": "DTW distance",
                 "macro_f1": "Macro-F1", "micro_f1": "Micro-F1",
                 "nll_token": "NLL per token of the real action (nats)", "nll_action": "NLL per real action (nats)"}


FLAG = "⚠"


def _fmt(value: float, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.1%}" if percent else f"{value:.4f}"


def over_max(rate: float, max_rate: float) -> bool:
    """Whether a failure rate is flagged: strictly above `max_rate` (an unknown rate is not)."""
    return not math.isnan(rate) and rate > max_rate


def _fmt_failure(rate: float, max_rate: float) -> str:
    if math.isnan(rate):
        return "-"
    return f"{rate:.1%} {FLAG}" if over_max(rate, max_rate) else f"{rate:.1%}"


def failure_note(rates: dict[str, float], max_rate: float) -> str:
    """The line under a table naming the methods whose failure rate is above `max_rate`
    (empty when none is): their metrics are computed on fewer agents than the others'."""
    flagged = [f"{m} ({r:.1%})" for m, r in sorted(rates.items()) if over_max(r, max_rate)]
    if not flagged:
        return ""
    return (f"{FLAG} failure rate above max_failure_rate {max_rate:.1%}: {', '.join(flagged)}. Their failed "
            f"generations have no simulated label, so their metrics are computed on fewer agents than the "
            f"others' (counts: metrics_raw.csv, columns simulated and failed).")


def write_raw_csv(rows: list[dict], path: Path) -> None:
    """Every (event, method, seed, dimension) row, for anyone who wants to recompute."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_metric_table(rows: list[dict], metric: str, out_dir: Path, max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE,
                       realism: Sequence[dict] | None = None) -> str:
    """A table like the paper's Tables 1 and 4: methods x dimensions, the mean over
    dimensions and its change against `state`, then the method's generation failure rate (⚠
    above `max_failure_rate`, with a line under the table naming those methods) and, when
    `realism` rows (mfray.eval.realism.realism_rows) are given, the method's discriminator AUC
    and descriptive share. Writes <metric>.md and <metric>.csv (failure_rate and
    failure_over_max columns, then realism_auc and descriptive_share); returns the Markdown."""
    methods, table = summarise(rows, metric)
    columns = list(DIMENSIONS) + ["mean", "vs_state"]
    by_method = {r["method"]: r for r in realism or ()}
    arrow = "lower is better" if LOWER_IS_BETTER[metric] else "higher is better"
    tail = " | failure rate |" + (" realism AUC | descriptive |" if realism is not None else "")
    lines = [f"### {METRIC_TITLES[metric]} ({arrow})", "", "| method | " + " | ".join(columns) + tail,
             "|---|" + "---|" * (len(columns) + 1 + (2 if realism is not None else 0))]
    for method in methods:
        cells = [_fmt(table[method].get(c, float("nan")), percent=c == "vs_state") for c in columns]
        cells.append(_fmt_failure(table[method]["failure_rate"], max_failure_rate))
        if realism is not None:
            r = by_method.get(method, {})
            cells += [_fmt(r.get("auc", float("nan"))), format_share(r.get("descriptive_share", float("nan")))]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    note = failure_note({m: table[m]["failure_rate"] for m in methods}, max_failure_rate)
    md = "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")
    (out_dir / f"{metric}.md").write_text(md, encoding="utf-8")
    with (out_dir / f"{metric}.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method"] + columns + ["failure_rate", "failure_over_max"]
                        + (["realism_auc", "descriptive_share"] if realism is not None else []))
        for method in methods:
            rate = table[method]["failure_rate"]
            extra = [by_method.get(method, {}).get(k, "") for k in ("auc", "descriptive_share")] if realism is not None else []
            writer.writerow([method] + [table[method].get(c, "") for c in columns] + [rate, over_max(rate, max_failure_rate)] + extra)
    return md


def format_share(value: float) -> str:
    """A share as a percentage with one decimal; "-" for None or NaN."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1%}"


REALISM_NOTE = (
    "Discriminator: logistic regression over character 2-5-grams (TF-IDF) and surface features of posts with "
    "links and @handles masked on both sides; per event the larger side is sampled down to the smaller "
    "(seeded); folds grouped by event, so every post is scored by a model fitted on other events; ROC-AUC over "
    "the pooled out-of-fold scores. 0.5: indistinguishable from real posts, 1.0: always told apart. "
    "Not a post = failed + empty + descriptive, over the simulated agents (inserted posts excluded); "
    "descriptive = narrates or frames instead of posting (mfray.eval.realism.describes_instead_of_speaking).")


def write_realism(realism: Sequence[dict], out_dir: Path) -> str:
    """realism.md (a posts table: per method the discriminator AUC, posts scored, events, folds,
    simulated agents, empty/failed, descriptive and not-a-post shares; then a mean-field table
    for the methods that have mean fields) and realism.csv (every column of
    mfray.eval.realism.realism_rows, one row per method). Returns the Markdown."""
    lines = ["### Realism of simulated posts (discriminator AUC: 0.5 indistinguishable from real, 1.0 always told apart)",
             "", ("| method | discriminator AUC | posts scored | events | folds | simulated | empty/failed | descriptive "
                  "| not a post |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in realism:
        lines.append(f"| {r['method']} | {_fmt(r['auc'])} | {r['posts_scored']} | {r['events']} | {r['folds']} | "
                     f"{r['simulated']} | {format_share(r['empty_failed_share'])} | {format_share(r['descriptive_share'])} | "
                     f"{format_share(r['not_a_post_share'])} |")
    notes = [f"{r['method']}: AUC not computed: {r['auc_note']}" for r in realism if r["auc_note"]]
    lines += ["", REALISM_NOTE, *([""] + notes if notes else [])]
    with_mf = [r for r in realism if r["mean_fields"]]
    lines += ["", "### Mean fields (share of distinct mean-field texts)", ""]
    if with_mf:
        lines += ["| method | mean fields | stance | emotion | behaviour | all three | copies instructions/meta | example "
                  "| updates | unchanged by the update |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in with_mf:
            example = r["mf_meta_example"].replace("|", "/")
            lines.append(f"| {r['method']} | {r['mean_fields']} | {format_share(r['mf_stance_share'])} | "
                         f"{format_share(r['mf_emotion_share'])} | {format_share(r['mf_behaviour_share'])} | "
                         f"{format_share(r['mf_aspects_share'])} | {format_share(r['mf_meta_share'])} | {example or '-'} | "
                         f"{r['mf_updates']} | {format_share(r['mf_unchanged_share'])} |")
        lines += ["", ("Aspects: the stance, emotion and behaviour word lists (English and Chinese) of "
                       "mfray.eval.realism.ASPECT_WORDS; meta: a META_RULES phrase or a run of 6 words (10 Chinese "
                       "characters) copied from a mean-field template or a worked-example summary of the timeline style. "
                       "Updates: mean-field rewrites between consecutive evaluated steps of a run; unchanged: the "
                       "share that returned the previous text verbatim (the policy then reads a fixed summary).")]
    else:
        lines.append("No method has a mean field.")
    md = "\n".join(lines) + "\n"
    (out_dir / "realism.md").write_text(md, encoding="utf-8")
    with (out_dir / "realism.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(realism[0]) if realism else ["method"])
        writer.writeheader()
        writer.writerows(realism)
    return md


FLOOR_NOTE = (
    "The noise floor is what a perfect simulator, one that draws its posts from the real distribution, would "
    "score with this annotator: every step window of each event's real posts is split at random into two halves, "
    "one standing for the real side and one for the simulation, and the metrics are computed between them "
    "(mfray.eval.noise; averaged over the noise_seeds splits, then over events), so compare methods against "
    "it, not against 0. The halves are half-size windows (N/2 posts against N/2, where the evaluation compares "
    "N real with N simulated), so sampling noise is larger than in the evaluation itself (with few posts per "
    "window much larger: a label seen in one half only costs a lot of KL); macro-F1 here is the chance agreement "
    "of two independent draws.")
AGREEMENT_NOTE = (
    "Agreement with hand labels on events no annotator rule or model was tuned on (mfray/eval/gold/, "
    "measure only), as recorded in mfray/eval/gold/agreement.json by the command shown. "
    "A dimension whose macro-F1 is low or that does not beat the majority label is one where this report's "
    "metrics say more about the annotator than about the simulator.")


def write_noise_floor(floor: Sequence[dict], out_dir: Path) -> None:
    """noise_floor.csv: the rows of mfray.eval.noise.evaluation_floor (dimension, kl,
    wasserstein, macro_f1, events)."""
    with (out_dir / "noise_floor.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["dimension", *FLOOR_METRICS, "events"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in writer.fieldnames} for r in floor)


def _mean(values: Sequence[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else float("nan")


def annotator_section(rows: list[dict], floor: Sequence[dict] | None, annotator: str | None,
                      agreement: Mapping[str, Mapping] | None) -> str:
    """The "Annotator and noise floor" section of summary.md: the floor table (`floor`,
    mfray.eval.noise.evaluation_floor) with, per metric, the mean over dimensions of the floor
    against each method's (`summarise`); then the annotator's measured agreement per test set
    (`agreement`: {test set: entry}, mfray.eval.agreement_record.annotator_agreement), or
    "not measured" with the command that measures it."""
    name = annotator or "unknown"
    lines = ["## Annotator and noise floor", "",
             f"Annotator: **{name}**. It labels the real and the simulated posts alike, so every metric of this "
             f"report is measured through it.", "", "### Noise floor of this evaluation", ""]
    if floor:
        lines += [FLOOR_NOTE, "", "| dimension | KL | Wasserstein | macro-F1 | events |", "|---|---|---|---|---|"]
        lines += [f"| {r['dimension']} | " + " | ".join(_fmt(r[m]) for m in FLOOR_METRICS) + f" | {r['events']} |"
                  for r in floor]
        means = {m: _mean([r[m] for r in floor]) for m in FLOOR_METRICS}
        lines += ["| **mean** | " + " | ".join(f"**{_fmt(means[m])}**" for m in FLOOR_METRICS) + " | |", "",
                  "Mean over dimensions, each method against the floor:", ""]
        for metric in FLOOR_METRICS:
            methods, table = summarise(rows, metric)
            arrow = "lower is better" if LOWER_IS_BETTER[metric] else "higher is better"
            values = ", ".join(f"{m} {_fmt(table[m]['mean'])}" for m in methods)
            lines.append(f"- {METRIC_TITLES[metric]} ({arrow}): {values}; floor {_fmt(means[metric])}")
    else:
        lines.append("Not computed: no real posts were annotated.")
    lines += ["", f"### Measured agreement of {name} on unseen hand-labelled events", "", AGREEMENT_NOTE, ""]
    agreement = agreement or {}
    if not agreement:
        lines += [f"**Not measured**: {name} has no recorded agreement on the hand-labelled test sets, so how "
                  f"well its labels match human labels on unseen events is unknown.", ""]
    for test_set in [*TEST_SET_NAMES, *sorted(set(agreement) - set(TEST_SET_NAMES))]:
        entry = agreement.get(test_set)
        if entry is None:
            lines += [f"- {test_set}: not measured: run `{measure_command(name, test_set)}`", ""]
            continue
        failed = f", {entry['unlabelled']} left unlabelled (scored as wrong)" if entry.get("unlabelled") else ""
        lines += [f"#### {test_set} ({entry['n']} posts, {entry['events']} events, language {entry['language']}{failed})", "",
                  "| dimension | macro-F1 | accuracy | majority accuracy | above majority |", "|---|---|---|---|---|"]
        lines += [f"| {r['dimension']} | {r['macro_f1']:.3f} | {r['accuracy']:.3f} | {r['majority_accuracy']:.3f} | "
                  f"{r['above_majority']} |" for r in agreement_rows(entry)]
        lines += [f"| **mean** | **{entry['mean_macro_f1']:.3f}** | **{entry['mean_accuracy']:.3f}** | "
                  f"**{entry['mean_majority_accuracy']:.3f}** | **{entry['above_majority']}/{len(entry['dimensions'])}** |",
                  "", f"Measured on {entry['date']} by `{entry['command']}`" + (f" ({entry['note']})" if entry.get("note") else "")
                  + ".", ""]
    return "\n".join(lines)


def write_nll_table(rows: list[dict], out_dir: Path, max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE) -> str:
    """NLL has no dimensions: methods x events, the mean over events and its change against
    `state`, per token and per action, then the method's generation failure rate (flagged as in
    `write_metric_table`). Writes nll.md and nll.csv (long: metric, method, column, value; the
    columns failure_rate and failure_over_max included); returns the Markdown, headed by why NLL
    is missing or partial when it is."""
    note = nll_note(rows)
    lines, records = [], []
    for metric in TRAJECTORY_METRICS:
        methods, events, table = summarise_events(rows, metric)
        columns = events + ["mean", "vs_state"]
        arrow = "lower is better" if LOWER_IS_BETTER[metric] else "higher is better"
        lines += [f"### {METRIC_TITLES[metric]} ({arrow})", "", "| method | " + " | ".join(columns) + " | failure rate |",
                  "|---|" + "---|" * (len(columns) + 1)]
        for method in methods:
            rate = table[method]["failure_rate"]
            cells = [_fmt(table[method][c], percent=c == "vs_state") for c in columns] + [_fmt_failure(rate, max_failure_rate)]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
            records += [(metric, method, c, table[method][c]) for c in columns]
            records += [(metric, method, "failure_rate", rate), (metric, method, "failure_over_max", over_max(rate, max_failure_rate))]
        flagged = failure_note({m: table[m]["failure_rate"] for m in methods}, max_failure_rate)
        lines += ["", flagged, ""] if flagged else [""]
    md = (f"{note}\n\n" if note else "") + "\n".join(lines)
    (out_dir / "nll.md").write_text(md, encoding="utf-8")
    with (out_dir / "nll.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["metric", "method", "column", "value"])
        writer.writerows(records)
    return md


def plot_trajectories(
    event_id: str, dimension: str, agent_index: Sequence[int], real: Sequence[str | None],
    simulated: dict[str, Sequence[str | None]], path: Path, window: int = 16,
) -> None:
    """Share of each label among the 16 nearest agents, real (solid, black) vs each method
    (dashed, coloured); one panel per label so lines never hide each other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = DIMENSIONS[dimension]
    fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 3.4), sharey=True, squeeze=False)
    colours = plt.get_cmap("tab10")
    for k, label in enumerate(labels):
        ax = axes[0][k]
        ax.plot(agent_index, _shares(real, label, labels, window), color="black", lw=2.2, label="real")
        for m, (method, sim) in enumerate(sorted(simulated.items())):
            ax.plot(agent_index, _shares(sim, label, labels, window), ls="--", lw=1.6, color=colours(m), label=method)
        ax.set_title(label)
        ax.set_xlabel("agent index")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"share ({window} nearest agents)")
    axes[0][-1].legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{event_id}: {dimension}, real vs simulated")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _shares(labels: Sequence[str | None], label: str, label_set: Sequence[str], window: int) -> list[float]:
    k = list(label_set).index(label)
    out = []
    for w in nearest_windows(list(labels), window):
        shares = label_shares(w, label_set)
        out.append(float(shares[k]) if shares.sum() else float("nan"))
    return out


def plot_radar(rows: list[dict], metric: str, path: Path, max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE) -> None:
    """Radar chart of methods over the eight dimensions for one metric (raw values, no
    normalisation: read with the title's better direction). Each legend entry carries the
    method's generation failure rate, ⚠ above `max_failure_rate`."""
    if metric not in METRICS:
        raise ValueError(f"a radar chart needs a per-dimension metric ({METRICS}); {metric!r} has no dimensions")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, table = summarise(rows, metric)
    dims = list(DIMENSIONS)
    angles = np.linspace(0, 2 * np.pi, len(dims), endpoint=False).tolist()
    fig = plt.figure(figsize=(6.4, 6.4))
    ax = fig.add_subplot(polar=True)
    for method in methods:
        values = [table[method][d] for d in dims]
        values = [0.0 if math.isnan(v) else v for v in values]
        rate = table[method]["failure_rate"]
        label = method if math.isnan(rate) else f"{method} (failed {_fmt_failure(rate, max_failure_rate)})"
        ax.plot(angles + angles[:1], values + values[:1], lw=1.8, label=label)
        ax.fill(angles + angles[:1], values + values[:1], alpha=0.08)
    ax.set_xticks(angles)
    ax.set_xticklabels(dims)
    arrow = "lower is better" if LOWER_IS_BETTER[metric] else "higher is better"
    ax.set_title(f"{METRIC_TITLES[metric]} by dimension ({arrow})", pad=18)
    ax.legend(loc="upper right", bbox_to_anchor=(1.25, 1.1), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


INTERVALS_NOTE = (
    "Relative change of the mean over events against the baseline, with its 95% paired bootstrap interval "
    "over events (10,000 draws of the events both methods ran; each event's value is the mean over its seeds "
    "and, in the mean column, over the dimensions both have). An interval that excludes 0 is a change these "
    "events support; one that spans 0 is not distinguishable from no change at this number of events.")


def _interval(r: dict) -> str:
    if math.isnan(r["change"]):
        return "-"
    return f"{r['change']:+.1%} [{r['low']:+.1%}, {r['high']:+.1%}]"


def write_intervals(rows: list[dict], out_dir: Path) -> str:
    """intervals.csv (every row of mfray.eval.intervals.change_intervals over METRICS) and the
    Markdown section: per metric, each comparison's change per dimension and in the mean with its
    interval. Empty (and no CSV) when no pair of methods is compared (no `state` run)."""
    intervals = change_intervals(rows, METRICS)
    path = out_dir / "intervals.csv"
    if not intervals:
        path.unlink(missing_ok=True)
        return ""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(intervals[0]))
        writer.writeheader()
        writer.writerows(intervals)
    columns = [*DIMENSIONS, MEAN]
    lines = ["## Changes over events, with 95% bootstrap intervals", "", INTERVALS_NOTE, ""]
    for metric in METRICS:
        arrow = "lower is better: a negative change is closer to the real population" if LOWER_IS_BETTER[metric] \
            else "higher is better"
        lines += [f"### {METRIC_TITLES[metric]} ({arrow})", "", "| comparison | events | " + " | ".join(columns) + " |",
                  "|---|---|" + "---|" * len(columns)]
        mine = [r for r in intervals if r["metric"] == metric]
        for pair in dict.fromkeys((r["method"], r["baseline"]) for r in mine):
            cells = {r["dimension"]: r for r in mine if (r["method"], r["baseline"]) == pair}
            lines.append(f"| {pair[0]} vs {pair[1]} | {cells[MEAN]['events']} | "
                         + " | ".join(_interval(cells[c]) for c in columns) + " |")
        lines.append("")
    return "\n".join(lines)


def failure_table(rows: list[dict], max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE) -> str:
    """Markdown: per method, the simulated evaluated agents, how many failed and the rate (⚠
    above `max_failure_rate`), pooled over events and seeds (`method_failures`)."""
    failures = method_failures(rows)
    lines = ["### Generation failures (evaluated agents, warm-up and interventions excluded)", "",
             "| method | simulated | failed | failure rate |", "|---|---|---|---|"]
    for method, f in failures.items():
        lines.append(f"| {method} | {f['simulated']} | {f['failed']} | {_fmt_failure(f['failure_rate'], max_failure_rate)} |")
    note = failure_note({m: f["failure_rate"] for m, f in failures.items()}, max_failure_rate)
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")


def write_summary(rows: list[dict], out_dir: Path, max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE,
                  realism: Sequence[dict] | None = None, floor: Sequence[dict] | None = None,
                  annotator: str | None = None, agreement: Mapping[str, Mapping] | None = None) -> None:
    """Everything both evaluation paths write from metric rows: the raw CSV, one table per
    metric (NLL's per event), summary.md (headed by the generation failures, ending with the
    changes over events and their bootstrap intervals, `write_intervals`), and radar charts
    of KL and macro-F1; every table and legend shows each method's failure rate, flagged above
    `max_failure_rate` (EvaluateConfig.max_failure_rate). With `realism` rows
    (mfray.eval.realism.realism_rows) the KL table also shows each method's discriminator AUC and
    descriptive share, and realism.md/.csv are written and appended to summary.md; without them
    (EvaluateConfig.realism off) a stale realism.md/.csv is removed. With `floor` rows
    (mfray.eval.noise.evaluation_floor) or an `annotator` name, summary.md gets the "Annotator and
    noise floor" section (`annotator_section`, `agreement` as there) after the failures, and
    noise_floor.csv is written (removed when there are no floor rows)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_raw_csv(rows, out_dir / "metrics_raw.csv")
    tables = [write_metric_table(rows, m, out_dir, max_failure_rate, realism if m == "kl" else None) for m in METRICS]
    tables += [write_nll_table(rows, out_dir, max_failure_rate)]
    if realism is not None:
        tables.append(write_realism(realism, out_dir))
    else:
        for name in ("realism.md", "realism.csv"):
            (out_dir / name).unlink(missing_ok=True)
    if floor:
        write_noise_floor(floor, out_dir)
    else:
        (out_dir / "noise_floor.csv").unlink(missing_ok=True)
    head = [failure_table(rows, max_failure_rate)]
    if floor is not None or annotator is not None:
        head.append(annotator_section(rows, floor, annotator, agreement))
    intervals = write_intervals(rows, out_dir)
    (out_dir / "summary.md").write_text("\n".join([*head, *tables, *([intervals] if intervals else [])]), encoding="utf-8")
    for metric in ("kl", "macro_f1"):
        plot_radar(rows, metric, out_dir / f"radar_{metric}.png", max_failure_rate)
