/** Queue items for the tests: one shape, so a change to `Item` is made in one place. */
import type { Item } from "../lib/types";

/** The n-th waiting image, from line 1 camera 1; the first carries the model's reason. */
export function queueItem(n: number): Item {
  return {
    id: `id${n}`,
    key: `unclear/line-1/cam-1/img_${n}.jpeg`,
    name: `img_${n}.jpeg`,
    model_label: "unclear",
    confidence: 0.55,
    p_defect: 0.45,
    model_version: "casting-cnn 1.0.0",
    reason: n === 1 ? "between thresholds" : null,
    line: "line-1",
    camera: "cam-1",
    uploaded_at: "2026-11-25T08:00:00Z",
    claimed_by: null,
    claim_expires_at: null,
  };
}
