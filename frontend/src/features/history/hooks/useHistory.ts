/** History entries for the applied filters. */
import { useCallback, useEffect, useState } from "react";

import { errorMessage } from "../../../lib/api";
import type { HistoryEntry, HistoryFilters } from "../../../lib/types";
import { fetchHistory } from "../api/history";

export interface HistoryState {
  entries: HistoryEntry[];
  loading: boolean;
  error: string | null;
  filters: HistoryFilters;
  apply: (filters: HistoryFilters) => void;
  refresh: () => void;
}

/** Fetch history whenever the filters change. */
export function useHistory(initial: HistoryFilters = {}): HistoryState {
  const [filters, setFilters] = useState<HistoryFilters>(initial);
  const [entries, setEntries] = useState<HistoryEntry[]>([]);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const [generation, setGeneration] = useState(0);

  useEffect(() => {
    let active = true;
    setLoading(true);
    fetchHistory(filters)
      .then((items) => {
        if (!active) return;
        setEntries(items);
        setError(null);
      })
      .catch((err: unknown) => {
        if (active) setError(errorMessage(err));
      })
      .finally(() => {
        if (active) setLoading(false);
      });
    // A late answer for old filters must not overwrite the current ones.
    return () => {
      active = false;
    };
  }, [filters, generation]);

  const apply = useCallback((next: HistoryFilters) => setFilters({ ...next }), []);
  const refresh = useCallback(() => setGeneration((g) => g + 1), []);

  return { entries, loading, error, filters, apply, refresh };
}
