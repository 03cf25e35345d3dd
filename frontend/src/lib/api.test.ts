import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { ApiClient, ApiError, EARLY_MAX_AGE_MS, errorMessage } from "./api";

function jsonResponse(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

describe("ApiClient", () => {
  const fetchMock = vi.fn<typeof fetch>();
  let client: ApiClient;

  beforeEach(() => {
    vi.stubGlobal("fetch", fetchMock);
    fetchMock.mockReset();
    client = new ApiClient(() => "");
  });

  afterEach(() => {
    vi.unstubAllGlobals();
  });

  function sentHeaders(call = 0): Record<string, string> {
    const init = fetchMock.mock.calls[call]?.[1];
    return (init?.headers ?? {}) as Record<string, string>;
  }

  it("sends the CSRF token on state-changing calls only", async () => {
    client.setCsrfToken("tok-123");
    fetchMock.mockResolvedValueOnce(jsonResponse(200, { ok: true }));
    fetchMock.mockResolvedValueOnce(jsonResponse(200, { items: [] }));

    await client.post("/api/items/abc/claim");
    await client.get("/api/queue", { query: { limit: 5, cursor: null } });

    expect(sentHeaders(0)["X-CSRF-Token"]).toBe("tok-123");
    expect(sentHeaders(1)["X-CSRF-Token"]).toBeUndefined();
    expect(fetchMock.mock.calls[1]?.[0]).toBe("/api/queue?limit=5");
    expect(fetchMock.mock.calls[0]?.[1]?.credentials).toBe("same-origin");
  });

  it("encodes a JSON body", async () => {
    fetchMock.mockResolvedValueOnce(jsonResponse(200, { id: "x" }));
    await client.post("/api/items/x/decision", { body: { label: "ok" } });
    const init = fetchMock.mock.calls[0]?.[1];
    expect(init?.method).toBe("POST");
    expect(init?.body).toBe('{"label":"ok"}');
    expect(sentHeaders()["Content-Type"]).toBe("application/json");
  });

  it("throws an ApiError carrying the server's detail", async () => {
    fetchMock.mockResolvedValueOnce(jsonResponse(409, { detail: "already decided by bob as defect" }));
    const err = await client.post("/api/items/x/decision").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(409);
    expect((err as ApiError).detail).toBe("already decided by bob as defect");
    expect(errorMessage(err)).toBe("already decided by bob as defect");
  });

  it("turns FastAPI validation lists into one readable message", async () => {
    fetchMock.mockResolvedValueOnce(
      jsonResponse(422, { detail: [{ loc: ["body", "label"], msg: "Input should be 'ok' or 'defect'" }] }),
    );
    const err = (await client.post("/api/x").catch((e: unknown) => e)) as ApiError;
    expect(err.detail).toBe("label: Input should be 'ok' or 'defect'");
  });

  it("reads Retry-After from a 429", async () => {
    fetchMock.mockResolvedValueOnce(jsonResponse(429, { detail: "too many failed logins" }, { "Retry-After": "42" }));
    const err = (await client.post("/api/login", { expectUnauthorized: true }).catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(429);
    expect(err.retryAfter).toBe(42);
  });

  it("falls back to the status line when the error body is not JSON", async () => {
    fetchMock.mockResolvedValueOnce(new Response("<html>bad gateway</html>", { status: 502, statusText: "Bad Gateway" }));
    const err = (await client.get("/api/queue").catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(502);
    expect(err.detail).toBe("502 Bad Gateway");
  });

  it("reports an unreachable service as status 0", async () => {
    fetchMock.mockRejectedValueOnce(new TypeError("Failed to fetch"));
    const err = (await client.get("/api/queue").catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(0);
    expect(err.detail).toMatch(/cannot reach/i);
  });

  it("tells listeners about a lost session, but not about a wrong password", async () => {
    const lost = vi.fn();
    client.onUnauthorized(lost);
    fetchMock.mockResolvedValueOnce(jsonResponse(401, { detail: "wrong user name or password" }));
    await client.post("/api/login", { expectUnauthorized: true }).catch(() => undefined);
    expect(lost).not.toHaveBeenCalled();

    fetchMock.mockResolvedValueOnce(jsonResponse(401, { detail: "not logged in" }));
    await client.get("/api/queue").catch(() => undefined);
    expect(lost).toHaveBeenCalledTimes(1);
  });

  it("returns undefined for 204", async () => {
    fetchMock.mockResolvedValueOnce(new Response(null, { status: 204 }));
    await expect(client.post("/api/logout")).resolves.toBeUndefined();
  });

  it("leaves a successful body unread when only the status matters, but still reads an error", async () => {
    // An endless image: reading it whole would never finish; cancelling it does.
    let cancelled = false;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new Uint8Array([0xff, 0xd8, 0xff]));
      },
      cancel() {
        cancelled = true;
      },
    });
    fetchMock.mockResolvedValueOnce(new Response(body, { status: 200, headers: { "Content-Type": "image/jpeg" } }));
    await expect(client.get("/api/items/x/image", { ignoreBody: true })).resolves.toBeUndefined();
    expect(cancelled).toBe(true);
    fetchMock.mockResolvedValueOnce(jsonResponse(400, { detail: "too large to show here" }));
    await expect(client.get("/api/items/x/image", { ignoreBody: true })).rejects.toMatchObject({
      status: 400,
      detail: "too large to show here",
    });
  });

  describe("prefetch", () => {
    it("lets the first matching get take the early answer instead of asking again", async () => {
      fetchMock.mockResolvedValueOnce(jsonResponse(200, { items: [{ id: "a" }], total: 1 }));
      const early = client.prefetch<{ total: number }>("/api/queue", { limit: 5, cursor: null });
      expect(fetchMock).toHaveBeenCalledTimes(1);
      expect(fetchMock.mock.calls[0]?.[0]).toBe("/api/queue?limit=5");
      expect(fetchMock.mock.calls[0]?.[1]?.credentials).toBe("same-origin");
      await expect(early).resolves.toEqual({ items: [{ id: "a" }], total: 1 });

      const page = await client.get<{ total: number }>("/api/queue", { query: { limit: 5, cursor: null } });
      expect(page.total).toBe(1);
      expect(fetchMock).toHaveBeenCalledTimes(1);

      // Taken once: the next call asks the server.
      fetchMock.mockResolvedValueOnce(jsonResponse(200, { items: [], total: 0 }));
      await expect(client.get("/api/queue", { query: { limit: 5 } })).resolves.toEqual({ items: [], total: 0 });
      expect(fetchMock).toHaveBeenCalledTimes(2);
    });

    it("waits for an early answer still on its way instead of sending a second request", async () => {
      let answer: (r: Response) => void = () => undefined;
      fetchMock.mockReturnValueOnce(new Promise<Response>((resolve) => (answer = resolve)));
      void client.prefetch("/api/config");
      const pending = client.get<{ undo_seconds: number }>("/api/config");
      answer(jsonResponse(200, { undo_seconds: 30, claim_seconds: 300 }));
      await expect(pending).resolves.toEqual({ undo_seconds: 30, claim_seconds: 300 });
      expect(fetchMock).toHaveBeenCalledTimes(1);
    });

    it("does not reuse an early 401 for a caller that needs a session, nor tell listeners", async () => {
      const lost = vi.fn();
      client.onUnauthorized(lost);
      fetchMock.mockResolvedValueOnce(jsonResponse(401, { detail: "not logged in" }));
      await expect(client.prefetch("/api/queue")).resolves.toBeNull();
      expect(lost).not.toHaveBeenCalled();

      fetchMock.mockResolvedValueOnce(jsonResponse(200, { items: [], total: 0 }));
      await expect(client.get("/api/queue")).resolves.toEqual({ items: [], total: 0 });
      expect(fetchMock).toHaveBeenCalledTimes(2);
    });

    it("hands an early 401 to a caller that expects one (who am I, before login)", async () => {
      fetchMock.mockResolvedValueOnce(jsonResponse(401, { detail: "not logged in" }));
      void client.prefetch("/api/me");
      const err = (await client.get("/api/me", { expectUnauthorized: true }).catch((e: unknown) => e)) as ApiError;
      expect(err.status).toBe(401);
      expect(fetchMock).toHaveBeenCalledTimes(1);
    });

    it("asks again when the early answer is too old or never came", async () => {
      vi.useFakeTimers({ toFake: ["Date"] });
      try {
        fetchMock.mockResolvedValueOnce(jsonResponse(200, { total: 7 }));
        await client.prefetch("/api/queue");
        vi.setSystemTime(Date.now() + EARLY_MAX_AGE_MS + 1);
        fetchMock.mockResolvedValueOnce(jsonResponse(200, { total: 3 }));
        await expect(client.get("/api/queue")).resolves.toEqual({ total: 3 });

        fetchMock.mockRejectedValueOnce(new TypeError("Failed to fetch"));
        await expect(client.prefetch("/api/me")).resolves.toBeNull();
        fetchMock.mockResolvedValueOnce(jsonResponse(200, { username: "alice", csrf_token: "t" }));
        await expect(client.get("/api/me")).resolves.toEqual({ username: "alice", csrf_token: "t" });
        expect(fetchMock).toHaveBeenCalledTimes(4);
      } finally {
        vi.useRealTimers();
      }
    });
  });
});
