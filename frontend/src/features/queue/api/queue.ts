/** Queue calls: list, claim, decide, undo, image URLs and why an image cannot be shown. */
import { ApiError, api, errorMessage, isApiError } from "../../../lib/api";
import type { Claim, Decision, Item, Label, QueuePage, ServerConfig, Undone } from "../../../lib/types";

const DEFAULT_SERVER_CONFIG: ServerConfig = { undo_seconds: 30, claim_seconds: 300 };

/** One page of waiting images, oldest first. */
export function fetchQueue(limit: number, cursor: string | null = null): Promise<QueuePage> {
  return api.get<QueuePage>("/api/queue", { query: { limit, cursor } });
}

/** Ask for the first queue page at page start; `fetchQueue(limit)` then takes this answer. */
export function prefetchQueue(limit: number): Promise<QueuePage | null> {
  return api.prefetch<QueuePage>("/api/queue", { limit, cursor: null });
}

/** Ask for the server's windows at page start; `fetchServerConfig()` then takes this answer. */
export function prefetchServerConfig(): Promise<ServerConfig | null> {
  return api.prefetch<ServerConfig>("/api/config");
}

/** One waiting item; 404 once it has left unclear/. */
export function fetchItem(id: string): Promise<Item> {
  return api.get<Item>(`/api/items/${encodeURIComponent(id)}`);
}

/** Claim an item for this inspector (or extend the claim); 409 when someone else holds it. */
export function claimItem(id: string): Promise<Claim> {
  return api.post<Claim>(`/api/items/${encodeURIComponent(id)}/claim`);
}

/** Record the inspector's verdict; 409 when someone else already decided or holds the claim. */
export function decideItem(id: string, label: Label, note?: string): Promise<Decision> {
  const body: { label: Label; note?: string } = { label };
  if (note && note.trim() !== "") body.note = note.trim();
  return api.post<Decision>(`/api/items/${encodeURIComponent(id)}/decision`, { body });
}

/** Take back this inspector's last decision while the undo window is open. */
export function undoLast(): Promise<Undone> {
  return api.post<Undone>("/api/undo");
}

function imagePath(id: string): string {
  return `/api/items/${encodeURIComponent(id)}/image`;
}

/** URL of an item's image, served through the review service. */
export function imageUrl(id: string): string {
  return api.url(imagePath(id));
}

/**
 * Why the image at `imageUrl(id)` cannot be shown, which an <img> cannot read: asks the same URL
 * once and resolves to the server's message (400 too large, 404/410 gone, 503 storage down), or to
 * null when the image came through this time. Rejects when the service cannot be reached (an
 * ApiError with status 0) or `signal` aborts.
 */
export async function imageProblem(id: string, signal?: AbortSignal): Promise<string | null> {
  try {
    await api.get<void>(imagePath(id), { signal, ignoreBody: true });
    return null;
  } catch (err) {
    if (!(err instanceof ApiError) || err.status === 0) throw err;
    return errorMessage(err);
  }
}

/** Undo and claim windows; the documented defaults when the server does not say. */
export async function fetchServerConfig(): Promise<ServerConfig> {
  try {
    const cfg = await api.get<Partial<ServerConfig>>("/api/config");
    return {
      undo_seconds: positive(cfg.undo_seconds) ?? DEFAULT_SERVER_CONFIG.undo_seconds,
      claim_seconds: positive(cfg.claim_seconds) ?? DEFAULT_SERVER_CONFIG.claim_seconds,
    };
  } catch (err) {
    // The endpoint is optional in the contract.
    if (isApiError(err, 404)) return DEFAULT_SERVER_CONFIG;
    throw err;
  }
}

function positive(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? value : null;
}
