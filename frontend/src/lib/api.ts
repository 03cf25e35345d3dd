/**
 * The one HTTP client of the page: same-origin cookies, the CSRF header on every
 * state-changing call, and typed errors that carry the server's `detail` message.
 */
import { config } from "../config";

const STATE_CHANGING = new Set(["POST", "PUT", "PATCH", "DELETE"]);
/** How long an answer fetched ahead at page start may stand in for the screen's own request. */
export const EARLY_MAX_AGE_MS = 10_000;

/** An API call that failed; `detail` is the server's human-readable message. */
export class ApiError extends Error {
  readonly status: number;
  readonly detail: string;
  readonly retryAfter: number | null;

  constructor(status: number, detail: string, retryAfter: number | null = null) {
    super(detail);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }
}

/** True when `err` is an ApiError with one of the given statuses. */
export function isApiError(err: unknown, ...statuses: number[]): err is ApiError {
  return err instanceof ApiError && (statuses.length === 0 || statuses.includes(err.status));
}

/** A message fit for the inspector, whatever was thrown. */
export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) return err.detail;
  if (err instanceof Error) return err.message;
  return String(err);
}

interface ValidationIssue {
  msg?: unknown;
  loc?: unknown;
}

// FastAPI answers 422 with a list of issues instead of a string.
function detailText(body: unknown, fallback: string): string {
  if (body && typeof body === "object" && "detail" in body) {
    const detail = (body as { detail: unknown }).detail;
    if (typeof detail === "string" && detail.trim() !== "") return detail;
    if (Array.isArray(detail)) {
      const parts = detail
        .map((d: ValidationIssue) => {
          const where = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body").join(".") : "";
          const msg = typeof d.msg === "string" ? d.msg : "";
          return where ? `${where}: ${msg}` : msg;
        })
        .filter((s) => s !== "");
      if (parts.length > 0) return parts.join("; ");
    }
  }
  return fallback;
}

function retryAfterSeconds(headers: Headers): number | null {
  const raw = headers.get("Retry-After");
  if (raw === null) return null;
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const at = Date.parse(raw);
  return Number.isNaN(at) ? null : Math.max(0, Math.round((at - Date.now()) / 1000));
}

type UnauthorizedListener = () => void;

export interface RequestOptions {
  query?: Record<string, string | number | null | undefined>;
  body?: unknown;
  /** A 401 from this call is an answer (e.g. wrong password), not an expired session. */
  expectUnauthorized?: boolean;
  signal?: AbortSignal;
  /** Only the status matters: a successful answer's body (an image, say) is cancelled unread. */
  ignoreBody?: boolean;
}

interface EarlyRequest {
  startedAt: number;
  response: Promise<Response | null>;
}

export class ApiClient {
  private csrfToken: string | null = null;
  private unauthorizedListeners = new Set<UnauthorizedListener>();
  private early = new Map<string, EarlyRequest>();

  constructor(private readonly base: () => string) {}

  /** Remember the CSRF token handed out by login or /api/me. */
  setCsrfToken(token: string | null): void {
    this.csrfToken = token;
  }

  /** Called whenever the server says the session is gone; returns an unsubscribe function. */
  onUnauthorized(listener: UnauthorizedListener): () => void {
    this.unauthorizedListeners.add(listener);
    return () => this.unauthorizedListeners.delete(listener);
  }

  /** Absolute or same-origin URL of an API path, for <img src> and links. */
  url(path: string, query?: RequestOptions["query"]): string {
    let url = `${this.base()}${path}`;
    if (query) {
      const params = new URLSearchParams();
      for (const [name, value] of Object.entries(query)) {
        if (value !== undefined && value !== null && value !== "") params.set(name, String(value));
      }
      const qs = params.toString();
      if (qs) url += `?${qs}`;
    }
    return url;
  }

  /**
   * Start a GET now, before the screen that needs it exists (page start-up), so start-up requests run
   * side by side instead of one after the other. The first `get` of the same URL within
   * EARLY_MAX_AGE_MS takes this answer instead of asking again (once). Resolves to the decoded body of
   * a successful answer, or null; never rejects.
   */
  prefetch<T>(path: string, query?: RequestOptions["query"]): Promise<T | null> {
    const url = this.url(path, query);
    const response = fetch(url, {
      method: "GET",
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    }).catch(() => null);
    this.early.set(url, { startedAt: Date.now(), response });
    return response.then(async (r) => {
      if (!r || !r.ok) return null;
      try {
        return (await r.clone().json()) as T;
      } catch {
        return null;
      }
    });
  }

  /** The answer fetched ahead for `url`, if fresh; taken at most once. */
  private takeEarly(url: string): Promise<Response | null> | null {
    const found = this.early.get(url);
    if (!found) return null;
    this.early.delete(url);
    return Date.now() - found.startedAt <= EARLY_MAX_AGE_MS ? found.response : null;
  }

  get<T>(path: string, options: RequestOptions = {}): Promise<T> {
    return this.request<T>("GET", path, options);
  }

  post<T>(path: string, options: RequestOptions = {}): Promise<T> {
    return this.request<T>("POST", path, options);
  }

  /** Send one request and decode its JSON answer, or throw an ApiError. */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    if (STATE_CHANGING.has(method) && this.csrfToken) headers["X-CSRF-Token"] = this.csrfToken;

    const url = this.url(path, options.query);
    let response: Response | null = null;
    const early = method === "GET" && !options.signal ? this.takeEarly(url) : null;
    if (early) {
      response = await early;
      // Fetched before the login (or lost on the way): this caller gets a fresh answer.
      if (response && response.status === 401 && !options.expectUnauthorized) response = null;
    }
    if (response === null) {
      try {
        response = await fetch(url, {
          method,
          headers,
          credentials: "same-origin",
          body: options.body === undefined ? undefined : JSON.stringify(options.body),
          signal: options.signal,
        });
      } catch (err) {
        if (err instanceof DOMException && err.name === "AbortError") throw err;
        throw new ApiError(0, "Cannot reach the review service. Check the network and try again.");
      }
    }

    if (response.status === 401 && !options.expectUnauthorized) {
      this.unauthorizedListeners.forEach((listener) => listener());
    }
    if (!response.ok) {
      let body: unknown = null;
      try {
        body = await response.json();
      } catch {
        // Not JSON (a proxy error page, say): fall back to the status text.
      }
      const fallback = `${response.status} ${response.statusText || "request failed"}`.trim();
      throw new ApiError(response.status, detailText(body, fallback), retryAfterSeconds(response.headers));
    }
    if (options.ignoreBody) {
      await response.body?.cancel();
      return undefined as T;
    }
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    if (text === "") return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(response.status, "The review service sent an answer that is not JSON.");
    }
  }
}

/** The page's single client. */
export const api = new ApiClient(() => config().apiBase);
