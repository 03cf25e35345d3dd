/** Recent decisions and undos from the audit log. */
import { api } from "../../../lib/api";
import type { HistoryFilters, HistoryPage } from "../../../lib/types";

/** One page, newest first, filtered by inspector, label and start time; `cursor` asks for the next page. */
export async function fetchHistory(filters: HistoryFilters, cursor?: string): Promise<HistoryPage> {
  const page = await api.get<HistoryPage>("/api/history", {
    query: {
      limit: filters.limit ?? 50,
      inspector: filters.inspector?.trim() || undefined,
      label: filters.label || undefined,
      since: filters.since || undefined,
      cursor,
    },
  });
  return { items: page.items, next_cursor: page.next_cursor ?? null };
}

/** URL of a decided image, served through the review service. */
export function historyImageUrl(id: string): string {
  return api.url(`/api/items/${encodeURIComponent(id)}/image`);
}
