/**
 * Build-time configuration, validated once at start-up so a bad value fails loudly
 * instead of surfacing as a confusing runtime error halfway through a shift.
 */

export interface AppConfig {
  /** Prefix for API calls; empty means same origin (the review service serves the page). */
  apiBase: string;
  /** Queue items fetched per page. */
  queuePageSize: number;
  /** How often the dashboard refreshes, in milliseconds. */
  statsRefreshMs: number;
  /** How often an empty queue is checked again, in milliseconds. */
  queuePollMs: number;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | boolean | undefined>;

function intSetting(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const text = String(raw).trim();
  if (!/^\d+$/.test(text)) {
    throw new ConfigError(`${name} must be a whole number, got "${text}"`);
  }
  const value = Number(text);
  if (value < min || value > max) {
    throw new ConfigError(`${name} must be between ${min} and ${max}, got ${value}`);
  }
  return value;
}

function apiBaseSetting(env: Env): string {
  const raw = env.VITE_API_BASE;
  if (raw === undefined || raw === "") return "";
  const text = String(raw).trim().replace(/\/+$/, "");
  if (!/^(https?:\/\/[^\s/]+)?(\/[^\s]*)?$/.test(text)) {
    throw new ConfigError(`VITE_API_BASE must be an absolute http(s) URL or a path, got "${text}"`);
  }
  return text;
}

/** Parse and validate configuration from Vite's environment. */
export function loadConfig(env: Env): AppConfig {
  return {
    apiBase: apiBaseSetting(env),
    queuePageSize: intSetting(env, "VITE_QUEUE_PAGE_SIZE", 50, 1, 200),
    statsRefreshMs: intSetting(env, "VITE_STATS_REFRESH_MS", 30_000, 2_000, 3_600_000),
    queuePollMs: intSetting(env, "VITE_QUEUE_POLL_MS", 15_000, 1_000, 600_000),
  };
}

let current: AppConfig | null = null;

/** The validated configuration; loaded from import.meta.env on first use. */
export function config(): AppConfig {
  current ??= loadConfig(import.meta.env as Env);
  return current;
}
