import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { imageProblem, imageUrl } from "./queue";

describe("imageProblem", () => {
  const fetchMock = vi.fn<typeof fetch>();

  beforeEach(() => {
    fetchMock.mockReset();
    vi.stubGlobal("fetch", fetchMock);
  });

  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it("asks the image's own URL and gives the server's detail", async () => {
    fetchMock.mockResolvedValueOnce(
      new Response(JSON.stringify({ detail: "storage unavailable" }), {
        status: 503,
        headers: { "Content-Type": "application/json" },
      }),
    );
    await expect(imageProblem("a/b")).resolves.toBe("storage unavailable");
    expect(fetchMock.mock.calls[0]?.[0]).toBe(imageUrl("a/b"));
    expect(fetchMock.mock.calls[0]?.[1]?.method).toBe("GET");
  });

  it("is null when the image comes through", async () => {
    const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]);
    fetchMock.mockResolvedValueOnce(new Response(jpeg, { status: 200, headers: { "Content-Type": "image/jpeg" } }));
    await expect(imageProblem("x")).resolves.toBeNull();
  });

  it("rejects when the service cannot be reached", async () => {
    fetchMock.mockRejectedValueOnce(new TypeError("Failed to fetch"));
    await expect(imageProblem("x")).rejects.toMatchObject({ status: 0 });
  });
});
