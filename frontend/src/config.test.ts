import { describe, expect, it } from "vitest";

import { ConfigError, loadConfig } from "./config";

describe("loadConfig", () => {
  it("uses the defaults for an empty environment", () => {
    expect(loadConfig({})).toEqual({ apiBase: "", queuePageSize: 50, statsRefreshMs: 30_000, queuePollMs: 15_000 });
  });

  it("reads and trims values", () => {
    const cfg = loadConfig({ VITE_API_BASE: "http://127.0.0.1:8000/", VITE_QUEUE_PAGE_SIZE: " 20 " });
    expect(cfg.apiBase).toBe("http://127.0.0.1:8000");
    expect(cfg.queuePageSize).toBe(20);
  });

  it.each([
    [{ VITE_QUEUE_PAGE_SIZE: "abc" }, /VITE_QUEUE_PAGE_SIZE must be a whole number/],
    [{ VITE_QUEUE_PAGE_SIZE: "0" }, /between 1 and 200/],
    [{ VITE_STATS_REFRESH_MS: "100" }, /VITE_STATS_REFRESH_MS must be between/],
    [{ VITE_API_BASE: "ftp://x y" }, /VITE_API_BASE/],
  ])("refuses %o", (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });
});
