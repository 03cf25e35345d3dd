import { act, renderHook, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { ApiError } from "../../../lib/api";
import * as queueApi from "../api/queue";
import { queueItem } from "../../../test/items";
import { pageRetryDelayMs, useReviewQueue } from "./useReviewQueue";

// vitest hoists vi.mock above the imports: the factory loads the shared mock module itself.
vi.mock("../api/queue", () => import("../../../test/queueApiMock"));

const api = vi.mocked(queueApi);

const item = queueItem;

/** A 503 after `ms`, as over a network. */
async function unavailableAfter(ms: number): Promise<never> {
  await new Promise((resolve) => setTimeout(resolve, ms));
  throw new ApiError(503, "storage unavailable");
}

describe("useReviewQueue's automatic retry of the next page", () => {
  beforeEach(() => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    api.fetchServerConfig.mockResolvedValue({ undo_seconds: 30, claim_seconds: 300 });
    api.claimItem.mockImplementation(async (id: string) => ({ id, claimed_by: "alice", expires_at: "2026-11-25T09:05:00Z" }));
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it("arms again after its timer fell on a reload that failed", async () => {
    let firstPage = true;
    api.fetchQueue.mockImplementation(async (_limit: number, cursor: string | null = null) => {
      if (cursor !== null) return unavailableAfter(20); // page 2 keeps failing
      if (firstPage) {
        firstPage = false;
        return { items: [item(1), item(2), item(3)], next_cursor: "c1", total: 6 };
      }
      return unavailableAfter(3_000); // the reload: slow, then failing
    });
    const pageCalls = () => api.fetchQueue.mock.calls.filter(([, cursor]) => cursor === "c1").length;
    const { result } = renderHook(() => useReviewQueue());
    await waitFor(() => expect(result.current.pageError).not.toBeNull());
    expect(pageCalls()).toBe(1);

    // Just before the 2 s retry is due, a reload starts; the retry falls on it and must not run beside it.
    await act(() => vi.advanceTimersByTimeAsync(pageRetryDelayMs(1) - 300));
    act(() => void result.current.reload());
    await act(() => vi.advanceTimersByTimeAsync(600));
    expect(pageCalls()).toBe(1);

    // The reload fails; the next page is still owed: it is tried again after the wait.
    await act(() => vi.advanceTimersByTimeAsync(3_000));
    expect(result.current.loadError).not.toBeNull();
    await act(() => vi.advanceTimersByTimeAsync(pageRetryDelayMs(1) + 500));
    expect(pageCalls()).toBe(2);
  });
});
