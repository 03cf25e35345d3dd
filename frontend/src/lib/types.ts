/** Shapes of the review API (docs/review.md); shared by every feature. */

export type Label = "ok" | "defect";
export type ModelLabel = "ok" | "defect" | "unclear";

export interface Session {
  username: string;
  csrf_token: string;
}

export interface Item {
  id: string;
  key: string;
  name: string;
  model_label: ModelLabel;
  confidence: number;
  p_defect: number;
  model_version: string;
  reason: string | null;
  line: string | null;
  camera: string | null;
  uploaded_at: string;
  claimed_by: string | null;
  claim_expires_at: string | null;
}

export interface QueuePage {
  items: Item[];
  next_cursor: string | null;
  total: number;
}

export interface Claim {
  id: string;
  claimed_by: string;
  expires_at: string;
}

export interface Decision {
  id: string;
  label: Label;
  decided_key: string;
  decided_by: string;
  decided_at: string;
  undo_until: string;
}

export interface Undone {
  id: string;
  key: string;
}

export interface HistoryEntry {
  id: string;
  key: string;
  decided_key: string;
  label: Label;
  note: string | null;
  inspector: string;
  decided_at: string;
  /** When this record's action happened (the undo's own time for an undo). */
  at?: string;
  model_label: ModelLabel | null;
  confidence: number | null;
  model_version: string | null;
  action: "decision" | "undo";
}

/** One page of the history and the cursor of the next, older one (null: no more). */
export interface HistoryPage {
  items: HistoryEntry[];
  next_cursor: string | null;
}

export interface HistoryFilters {
  inspector?: string;
  label?: Label | "";
  since?: string;
  limit?: number;
}

export interface Stats {
  counts: {
    okay: number;
    defect: number;
    unclear: number;
    human_decided: number;
    rejected: number;
  };
  defect_rate: number;
  unclear_rate: number;
  throughput_per_hour: { hour: string; decisions: number }[];
  oldest_unclear_age_s: number | null;
  computed_at: string;
  /** When the okay/defect/human_decided/rejected counts were listed (they refresh more slowly). */
  totals_computed_at: string;
}

export interface ServerConfig {
  undo_seconds: number;
  claim_seconds: number;
}
