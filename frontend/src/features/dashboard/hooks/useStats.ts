/** Stats refreshed on a timer while the dashboard is open. */
import { useCallback, useEffect, useState } from "react";

import { errorMessage } from "../../../lib/api";
import type { Stats } from "../../../lib/types";
import { fetchStats } from "../api/stats";

export interface StatsState {
  stats: Stats | null;
  error: string | null;
  updatedAt: Date | null;
  refresh: () => Promise<void>;
}

/** Load stats now and every `refreshMs`. */
export function useStats(refreshMs: number): StatsState {
  const [stats, setStats] = useState<Stats | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [updatedAt, setUpdatedAt] = useState<Date | null>(null);

  const refresh = useCallback(async () => {
    try {
      setStats(await fetchStats());
      setUpdatedAt(new Date());
      setError(null);
    } catch (err) {
      setError(errorMessage(err));
    }
  }, []);

  useEffect(() => {
    void refresh();
    const timer = window.setInterval(() => void refresh(), refreshMs);
    return () => window.clearInterval(timer);
  }, [refresh, refreshMs]);

  return { stats, error, updatedAt, refresh };
}
