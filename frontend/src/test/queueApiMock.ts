import { vi } from "vitest";

/** The queue API module with every call a mock, for `vi.mock("../api/queue", () => import(...))`. */
export const fetchQueue = vi.fn();
export const fetchItem = vi.fn();
export const claimItem = vi.fn();
export const decideItem = vi.fn();
export const undoLast = vi.fn();
export const fetchServerConfig = vi.fn();
export const imageUrl = (id: string) => `/api/items/${id}/image`;
/** Resolves to null (the image came through) unless a test says otherwise. */
export const imageProblem = vi.fn(async (_id: string, _signal?: AbortSignal): Promise<string | null> => null);
