import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { api } from "../../../lib/api";
import { logout } from "./auth";

function jsonResponse(status: number, body: unknown): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

describe("logout", () => {
  const fetchMock = vi.fn<typeof fetch>();

  beforeEach(() => {
    fetchMock.mockReset();
    vi.stubGlobal("fetch", fetchMock);
    api.setCsrfToken("tok-1");
  });

  afterEach(() => {
    api.setCsrfToken(null);
    vi.unstubAllGlobals();
  });

  /** The CSRF header the next state-changing call sends. */
  async function tokenSentNext(): Promise<string | undefined> {
    fetchMock.mockResolvedValueOnce(jsonResponse(200, {}));
    await api.post("/api/items/x/claim");
    const headers = (fetchMock.mock.lastCall?.[1]?.headers ?? {}) as Record<string, string>;
    return headers["X-CSRF-Token"];
  }

  it("keeps the CSRF token when the server did not end the session", async () => {
    fetchMock.mockResolvedValueOnce(jsonResponse(503, { detail: "storage unavailable" }));
    await expect(logout()).rejects.toMatchObject({ status: 503, detail: "storage unavailable" });
    // The session is still valid, so the page must still be able to decide.
    expect(await tokenSentNext()).toBe("tok-1");
  });

  it("forgets the CSRF token once logged out, or when the session was already gone", async () => {
    fetchMock.mockResolvedValueOnce(new Response(null, { status: 204 }));
    await expect(logout()).resolves.toBeUndefined();
    expect(await tokenSentNext()).toBeUndefined();

    api.setCsrfToken("tok-2");
    fetchMock.mockResolvedValueOnce(jsonResponse(401, { detail: "not logged in" }));
    await expect(logout()).rejects.toMatchObject({ status: 401 });
    expect(await tokenSentNext()).toBeUndefined();
  });
});
