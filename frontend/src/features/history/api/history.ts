/** Recent decisions and undos from the audit log. */
import { api } from "../../../lib/api";
import type { HistoryEntry, HistoryFilters } from "../../../lib/types";

/** Newest first, filtered by inspector, label and start time. */
export async function fetchHistory(filters: HistoryFilters): Promise<HistoryEntry[]> {
  const page = await api.get<{ items: HistoryEntry[] }>("/api/history", {
    query: {
      limit: filters.limit ?? 50,
      inspector: filters.inspector?.trim() || undefined,
      label: filters.label || undefined,
      since: filters.since || undefined,
    },
  });
  return page.items;
}

/** URL of a decided image, served through the review service. */
export function historyImageUrl(id: string): string {
  return api.url(`/api/items/${encodeURIComponent(id)}/image`);
}
