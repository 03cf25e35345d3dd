/** Dashboard figures. */
import { api } from "../../../lib/api";
import type { Stats } from "../../../lib/types";

/** Counts per prefix, rates, hourly throughput and the oldest waiting image's age. */
export function fetchStats(): Promise<Stats> {
  return api.get<Stats>("/api/stats");
}
