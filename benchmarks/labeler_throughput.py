"""Throughput of the rule-based report labeler on one core: prints `reports_per_s=<float>`.

The corpus is built from realistic MIMIC-style findings and impression sentences, a few to a
dozen per report, with a fixed seed. The target of issue 2 is 2,000 reports/s; `ratio` is the
measured rate over that target (>= 1 passes), so figures from different machines compare.

    python benchmarks/labeler_throughput.py [--reports 5000] [--repeats 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import time

from chexficient import labeler

TARGET_REPORTS_PER_S = 2000.0

SENTENCES = (
    "PA and lateral views of the chest were obtained.",
    "Comparison is made to the prior study from the previous day.",
    "The heart size is normal.",
    "Heart size is mildly enlarged, unchanged.",
    "Moderate cardiomegaly is stable.",
    "The cardiomediastinal silhouette is within normal limits.",
    "Mediastinal and hilar contours are unremarkable.",
    "The mediastinum is widened, which may be due to the supine technique.",
    "The lungs are clear without focal consolidation, pleural effusion, or pneumothorax.",
    "There is no focal consolidation, pleural effusion, or pneumothorax.",
    "Small bilateral pleural effusions with adjacent bibasilar atelectasis.",
    "Blunting of the left costophrenic angle may reflect a small effusion or pleural thickening.",
    "Patchy opacity at the right lung base likely reflects atelectasis, though pneumonia "
    "cannot be excluded.",
    "Mild pulmonary vascular congestion without frank interstitial edema.",
    "Moderate pulmonary edema has improved since the prior exam.",
    "Retrocardiac opacity is concerning for left lower lobe pneumonia.",
    "A 1.2 cm nodule in the right upper lobe is unchanged.",
    "No pneumothorax is seen.",
    "The previously seen right apical pneumothorax has resolved.",
    "Endotracheal tube terminates 4.5 cm above the carina.",
    "Enteric tube courses below the diaphragm with the tip out of view.",
    "Right internal jugular central venous catheter tip is in the mid SVC.",
    "Left chest wall pacemaker with leads in the right atrium and right ventricle.",
    "Median sternotomy wires and mediastinal clips are intact.",
    "Interval removal of the nasogastric tube.",
    "Old healed left-sided rib fractures are again seen.",
    "No acute displaced rib fracture is identified.",
    "Calcified granuloma in the left upper lobe.",
    "Degenerative changes of the thoracic spine.",
    "Right basilar opacity, atelectasis versus consolidation.",
    "No new consolidation.",
    "No significant change in the small left pleural effusion.",
    "Biapical pleural thickening is noted.",
    "No acute cardiopulmonary process.",
    "Findings were discussed with the referring physician by telephone.",
)


def make_corpus(n: int, seed: int) -> list[str]:
    """`n` reports of 3 to 12 sentences, drawn with a fixed seed, under FINDINGS / IMPRESSION."""
    rng = random.Random(seed)
    reports = []
    for _ in range(n):
        findings = " ".join(rng.choices(SENTENCES, k=rng.randint(2, 10)))
        impression = " ".join(rng.choices(SENTENCES, k=rng.randint(1, 2)))
        reports.append(f"FINDINGS: {findings}\n\nIMPRESSION: {impression}")
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    corpus = make_corpus(args.reports, args.seed)
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        labeler.label(corpus)
        best = min(best, time.perf_counter() - start)
    rate = len(corpus) / best
    mean_chars = sum(map(len, corpus)) / len(corpus)
    print(f"reports={len(corpus)} mean_chars={mean_chars:.0f} best_of={args.repeats}")
    print(f"reports_per_s={rate:.1f}")
    print(f"ratio={rate / TARGET_REPORTS_PER_S:.2f} (target {TARGET_REPORTS_PER_S:.0f} reports/s)")


if __name__ == "__main__":
    main()
