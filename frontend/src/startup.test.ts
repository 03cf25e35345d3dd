import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { currentSession } from "./features/auth/api/auth";
import { fetchQueue, fetchServerConfig } from "./features/queue/api/queue";
import { preloadedImages, startEarlyRequests } from "./startup";

function jsonResponse(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

describe("startEarlyRequests", () => {
  const fetchMock = vi.fn<typeof fetch>();
  const answers = new Map<string, (r: Response) => void>();

  beforeEach(() => {
    answers.clear();
    fetchMock.mockReset();
    fetchMock.mockImplementation(
      (url) => new Promise<Response>((resolve) => answers.set(String(url).split("?")[0] ?? "", resolve)),
    );
    vi.stubGlobal("fetch", fetchMock);
  });

  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it("sends who-am-I, config and the first queue page together, then loads the first image", async () => {
    const done = startEarlyRequests("/");
    // All three are on their way before any of them has answered.
    expect(fetchMock.mock.calls.map((c) => String(c[0]))).toEqual([
      "/api/me",
      "/api/config",
      "/api/queue?limit=50",
    ]);
    const before = preloadedImages().length;
    answers.get("/api/queue")?.(
      jsonResponse(200, { items: [{ id: "Zmlyc3Q", name: "first.jpg" }], next_cursor: null, total: 1 }),
    );
    await done;
    // The image starts loading on the queue's answer, without waiting for /api/me.
    expect(preloadedImages().slice(before)).toEqual([new URL("/api/items/Zmlyc3Q/image", window.location.href).href]);
    answers.get("/api/me")?.(jsonResponse(200, { username: "alice", csrf_token: "t" }));
    answers.get("/api/config")?.(jsonResponse(200, { undo_seconds: 20, claim_seconds: 300 }));

    // The screens' own calls take the early answers: still three requests in all.
    await expect(currentSession()).resolves.toEqual({ username: "alice", csrf_token: "t" });
    await expect(fetchServerConfig()).resolves.toEqual({ undo_seconds: 20, claim_seconds: 300 });
    await expect(fetchQueue(50)).resolves.toMatchObject({ total: 1 });
    expect(fetchMock).toHaveBeenCalledTimes(3);
  });

  it("preloads nothing when the queue says the browser is not logged in", async () => {
    const done = startEarlyRequests("/");
    const before = preloadedImages().length;
    answers.get("/api/queue")?.(jsonResponse(401, { detail: "not logged in" }));
    await done;
    expect(preloadedImages().length).toBe(before);
  });

  it("asks only who is logged in on the other screens", async () => {
    await startEarlyRequests("/history");
    expect(fetchMock.mock.calls.map((c) => String(c[0]))).toEqual(["/api/me"]);
  });
});
