/** History entries for the applied filters, a page at a time. */
import { useCallback, useEffect, useRef, useState } from "react";

import { errorMessage } from "../../../lib/api";
import type { HistoryEntry, HistoryFilters } from "../../../lib/types";
import { fetchHistory } from "../api/history";

export interface HistoryState {
  entries: HistoryEntry[];
  loading: boolean;
  loadingMore: boolean;
  /** Whether older entries are left to load. */
  hasMore: boolean;
  error: string | null;
  filters: HistoryFilters;
  apply: (filters: HistoryFilters) => void;
  refresh: () => void;
  loadMore: () => void;
}

/** Fetch the first page whenever the filters change; `loadMore` appends the next, older one. */
export function useHistory(initial: HistoryFilters = {}): HistoryState {
  const [filters, setFilters] = useState<HistoryFilters>(initial);
  const [entries, setEntries] = useState<HistoryEntry[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [loadingMore, setLoadingMore] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [generation, setGeneration] = useState(0);
  // Bumped by every first-page load, so an older page that arrives late is dropped.
  const epoch = useRef(0);

  useEffect(() => {
    let active = true;
    epoch.current += 1;
    setLoading(true);
    setLoadingMore(false);
    // The old rows and cursor belong to the old filters: shown next to new filters (say, after this
    // load fails) they would claim to match them.
    setEntries([]);
    setCursor(null);
    fetchHistory(filters)
      .then((page) => {
        if (!active) return;
        setEntries(page.items);
        setCursor(page.next_cursor);
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

  const loadMore = useCallback(() => {
    if (cursor === null || loading || loadingMore) return;
    const mine = epoch.current;
    setLoadingMore(true);
    fetchHistory(filters, cursor)
      .then((page) => {
        if (epoch.current !== mine) return;
        setEntries((before) => [...before, ...page.items]);
        setCursor(page.next_cursor);
        setError(null);
      })
      .catch((err: unknown) => {
        if (epoch.current === mine) setError(errorMessage(err));
      })
      .finally(() => {
        if (epoch.current === mine) setLoadingMore(false);
      });
  }, [cursor, filters, loading, loadingMore]);

  const apply = useCallback((next: HistoryFilters) => setFilters({ ...next }), []);
  const refresh = useCallback(() => setGeneration((g) => g + 1), []);

  return {
    entries,
    loading,
    loadingMore,
    hasMore: cursor !== null,
    error,
    filters,
    apply,
    refresh,
    loadMore,
  };
}
