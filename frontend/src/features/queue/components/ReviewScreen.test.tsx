import { act, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { ApiError } from "../../../lib/api";
import type { Decision } from "../../../lib/types";
import * as queueApi from "../api/queue";
import { pageRetryDelayMs } from "../hooks/useReviewQueue";
import { queueItem } from "../../../test/items";
import { ReviewScreen } from "./ReviewScreen";

// vitest hoists vi.mock above the imports: the factory loads the shared mock module itself.
vi.mock("../api/queue", () => import("../../../test/queueApiMock"));

const api = vi.mocked(queueApi);

const item = queueItem;

function decision(id: string, label: "ok" | "defect"): Decision {
  return {
    id,
    label,
    decided_key: `human_decided/line-1/cam-1/${label}_${id}.jpeg`,
    decided_by: "alice",
    decided_at: "2026-11-25T09:00:00Z",
    undo_until: "2026-11-25T09:00:30Z",
  };
}

const items = [item(1), item(2), item(3)];

beforeEach(() => {
  api.fetchQueue.mockResolvedValue({ items, next_cursor: null, total: 3 });
  api.fetchServerConfig.mockResolvedValue({ undo_seconds: 30, claim_seconds: 300 });
  api.claimItem.mockImplementation(async (id: string) => ({ id, claimed_by: "alice", expires_at: "2026-11-25T09:05:00Z" }));
  api.decideItem.mockImplementation(async (id: string, label) => decision(id, label));
});

function shownImage(): string | null {
  return within(screen.getByRole("region", { name: "Image under review" })).getByRole("img").getAttribute("alt");
}

async function ready() {
  render(<ReviewScreen />);
  await waitFor(() => expect(api.claimItem).toHaveBeenCalledWith("id1"));
  await screen.findByText("Claimed by you");
}

describe("ReviewScreen", () => {
  it("opens the oldest image, claims it and shows what is left", async () => {
    await ready();
    expect(api.fetchQueue).toHaveBeenCalledWith(50, null);
    expect(shownImage()).toBe("Part image img_1.jpeg");
    expect(screen.getByTestId("remaining")).toHaveTextContent("3");
    expect(screen.getByText("between thresholds")).toBeInTheDocument();
  });

  it("decides with O and D and moves to the next image", async () => {
    const user = userEvent.setup();
    await ready();

    await user.keyboard("o");
    await waitFor(() => expect(api.decideItem).toHaveBeenCalledWith("id1", "ok", ""));
    await waitFor(() => expect(shownImage()).toBe("Part image img_2.jpeg"));
    await waitFor(() => expect(api.claimItem).toHaveBeenCalledWith("id2"));
    expect(screen.getByTestId("remaining")).toHaveTextContent("2");

    await user.keyboard("D");
    await waitFor(() => expect(api.decideItem).toHaveBeenCalledWith("id2", "defect", ""));
    await waitFor(() => expect(shownImage()).toBe("Part image img_3.jpeg"));
    expect(screen.getByTestId("status")).toHaveTextContent("Marked img_2.jpeg as defect. 1 left.");
  });

  it("navigates with the arrows and N/P, claiming each image it opens", async () => {
    const user = userEvent.setup();
    await ready();

    await user.keyboard("{ArrowRight}");
    await waitFor(() => expect(shownImage()).toBe("Part image img_2.jpeg"));
    await waitFor(() => expect(api.claimItem).toHaveBeenCalledWith("id2"));
    await user.keyboard("n");
    await waitFor(() => expect(shownImage()).toBe("Part image img_3.jpeg"));
    await user.keyboard("{ArrowLeft}");
    await waitFor(() => expect(shownImage()).toBe("Part image img_2.jpeg"));
    await user.keyboard("p");
    await waitFor(() => expect(shownImage()).toBe("Part image img_1.jpeg"));
    // Coming back re-claims: the first claim may have lapsed meanwhile.
    await waitFor(() => expect(api.claimItem.mock.calls.map((c) => c[0])).toEqual(["id1", "id2", "id3", "id2", "id1"]));
    expect(api.decideItem).not.toHaveBeenCalled();
  });

  it("sends the note and ignores shortcuts typed into it", async () => {
    const user = userEvent.setup();
    await ready();

    await user.type(screen.getByRole("textbox"), "porosity on rim, odd");
    expect(api.decideItem).not.toHaveBeenCalled();
    await user.keyboard("{Escape}");
    await user.keyboard("d");

    await waitFor(() => expect(api.decideItem).toHaveBeenCalledWith("id1", "defect", "porosity on rim, odd"));
  });

  it("moves on with a clear message when another inspector holds the image", async () => {
    api.claimItem.mockImplementation(async (id: string) => {
      if (id === "id1") throw new ApiError(409, "claimed by bob until 10:42:00 UTC");
      return { id, claimed_by: "alice", expires_at: "2026-11-25T09:05:00Z" };
    });
    render(<ReviewScreen />);

    expect(await screen.findByRole("alert")).toHaveTextContent("img_1.jpeg: claimed by bob until 10:42:00 UTC");
    await waitFor(() => expect(shownImage()).toBe("Part image img_2.jpeg"));
    await waitFor(() => expect(api.claimItem).toHaveBeenCalledWith("id2"));
  });

  it("overwrites nothing and moves on when someone decided first", async () => {
    const user = userEvent.setup();
    api.decideItem.mockRejectedValueOnce(new ApiError(409, "already decided by bob as defect"));
    await ready();

    await user.keyboard("o");

    expect(await screen.findByRole("alert")).toHaveTextContent("already decided by bob as defect");
    await waitFor(() => expect(shownImage()).toBe("Part image img_2.jpeg"));
    expect(screen.queryByRole("button", { name: /^Undo U/ })).not.toBeInTheDocument();
  });

  it("offers Undo in a toast and puts the image back", async () => {
    const user = userEvent.setup();
    api.undoLast.mockResolvedValue({ id: "id1", key: "unclear/line-1/cam-1/img_1.jpeg" });
    api.fetchItem.mockResolvedValue(item(1));
    await ready();

    await user.keyboard("o");
    const toast = await screen.findByText("img_1.jpeg marked OK.");
    const undoButton = within(toast.parentElement as HTMLElement).getByRole("button", { name: /Undo/ });
    expect(undoButton).toHaveTextContent(/\d+ s/);

    await user.click(undoButton);

    await waitFor(() => expect(api.undoLast).toHaveBeenCalledTimes(1));
    await waitFor(() => expect(shownImage()).toBe("Part image img_1.jpeg"));
    expect(screen.queryByText("img_1.jpeg marked OK.")).not.toBeInTheDocument();
    expect(screen.getByTestId("status")).toHaveTextContent("Undone: img_1.jpeg is back in the queue.");
    expect(screen.getByTestId("remaining")).toHaveTextContent("3");
  });

  it("undoes with U and explains when the window has passed", async () => {
    const user = userEvent.setup();
    api.undoLast.mockRejectedValue(new ApiError(409, "nothing to undo: the undo window has passed"));
    await ready();

    await user.keyboard("u");

    expect(await screen.findByRole("alert")).toHaveTextContent("Cannot undo: nothing to undo: the undo window has passed");
  });

  it("hides the undo toast when its window closes", async () => {
    // Fake clock (still moving with real time for Testing Library's polling): no real 1.4 s wait.
    vi.useFakeTimers({ shouldAdvanceTime: true });
    try {
      const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
      api.decideItem.mockResolvedValue({ ...decision("id1", "ok"), undo_until: "2026-11-25T09:00:01Z" });
      await ready();

      await user.keyboard("o");
      await screen.findByText("img_1.jpeg marked OK.");
      // Half the window (the rest is slack for real time moving the clock too): still offered.
      await act(() => vi.advanceTimersByTimeAsync(500));
      expect(screen.getByText("img_1.jpeg marked OK.")).toBeInTheDocument();
      await act(() => vi.advanceTimersByTimeAsync(900));

      expect(screen.queryByText("img_1.jpeg marked OK.")).not.toBeInTheDocument();
    } finally {
      vi.useRealTimers();
    }
  });

  it("toggles the loupe with Z", async () => {
    const user = userEvent.setup();
    await ready();
    const loupe = screen.getByTestId("loupe");
    expect(loupe).toHaveAttribute("data-scale", "1.00");

    await user.keyboard("z");
    expect(loupe).toHaveAttribute("data-scale", "2.50");
    expect(screen.getByRole("button", { name: "Zoom off (Z)" })).toHaveAttribute("aria-pressed", "true");

    await user.keyboard("z");
    expect(loupe).toHaveAttribute("data-scale", "1.00");
  });

  it("zooms in steps, pans with shift and the arrows, and resets with 0", async () => {
    const user = userEvent.setup();
    await ready();
    const loupe = screen.getByTestId("loupe");
    // jsdom does no layout; give the frame a size so the pan limits are real.
    Object.defineProperty(loupe, "clientWidth", { value: 800 });
    Object.defineProperty(loupe, "clientHeight", { value: 600 });
    const image = within(loupe).getByRole("img");

    await user.keyboard("+");
    expect(loupe).toHaveAttribute("data-scale", "1.25");
    await user.keyboard("-");
    expect(loupe).toHaveAttribute("data-scale", "1.00");

    await user.keyboard("z");
    // Zoomed 2.5x about the centre: the image's left edge sits at 400 - 400 * 2.5 = -600.
    expect(image.style.transform).toBe("translate(-600px, -450px) scale(2.5)");
    await user.keyboard("{Shift>}{ArrowLeft}{/Shift}");
    expect(image.style.transform).toBe("translate(-540px, -450px) scale(2.5)");
    await user.keyboard("{Shift>}{ArrowDown}{/Shift}");
    expect(image.style.transform).toBe("translate(-540px, -510px) scale(2.5)");
    expect(shownImage()).toBe("Part image img_1.jpeg");

    await user.keyboard("0");
    expect(image.style.transform).toBe("translate(0px, 0px) scale(1)");
  });

  it("has a button for every keyboard action", async () => {
    const user = userEvent.setup();
    await ready();

    await user.click(screen.getByRole("button", { name: "Next image (Right arrow or N)" }));
    await waitFor(() => expect(shownImage()).toBe("Part image img_2.jpeg"));
    await user.click(screen.getByRole("button", { name: "Mark defect (D)" }));
    await waitFor(() => expect(api.decideItem).toHaveBeenCalledWith("id2", "defect", ""));
    fireEvent.click(screen.getByRole("button", { name: "Zoom in (Z)" }));
    expect(screen.getByTestId("loupe")).toHaveAttribute("data-scale", "2.50");
    expect(screen.getByRole("button", { name: "Undo last decision (U)" })).toBeEnabled();
    expect(screen.getByRole("button", { name: "Previous image (Left arrow or P)" })).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Mark OK (O)" })).toBeInTheDocument();
  });

  it("lists the shortcuts on screen", async () => {
    await ready();
    const list = screen.getByRole("region", { name: "Keyboard" });
    for (const label of ["Mark OK", "Mark defect", "Next image", "Previous image", "Undo decision", "Zoom in / out", "Pan"]) {
      expect(within(list).getByText(label)).toBeInTheDocument();
    }
  });

  describe("when the next page fails to load", () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    function appendCalls(): number {
      return api.fetchQueue.mock.calls.filter((c) => c[1] === "c1").length;
    }

    /** A 503 after a short while, as over a network (an instant one would hide a retry loop). */
    async function unavailable(): Promise<never> {
      await new Promise((resolve) => setTimeout(resolve, 20));
      throw new ApiError(503, "storage unavailable");
    }

    it("waits before asking again, says so while an image is open, and appends on a retry", async () => {
      // Fake clock, still moving with real time so Testing Library's polling works.
      vi.useFakeTimers({ shouldAdvanceTime: true });
      let failing = true;
      api.fetchQueue.mockImplementation(async (_limit: number, cursor: string | null = null) => {
        if (cursor === null) return { items, next_cursor: "c1", total: 6 };
        if (failing) return unavailable();
        return { items: [item(4), item(5), item(6)], next_cursor: null, total: 6 };
      });
      await ready();
      await waitFor(() => expect(appendCalls()).toBeGreaterThan(0));
      // A second on the fake clock, React rendering as it goes (waitFor leaves act meanwhile).
      const until = Date.now() + 1_000;
      await waitFor(() => expect(Date.now()).toBeGreaterThanOrEqual(until));
      // One attempt in that second, not a request loop.
      expect(appendCalls()).toBeLessThanOrEqual(2);

      const alert = await screen.findByRole("alert");
      expect(alert).toHaveTextContent("Could not load more images: storage unavailable. Retrying automatically.");
      expect(shownImage()).toBe("Part image img_1.jpeg");

      // One automatic retry once the first wait (2 s) is over; it fails again, and the next waits 4 s.
      const before = appendCalls();
      await act(() => vi.advanceTimersByTimeAsync(pageRetryDelayMs(1) - 1_000 + 500));
      expect(appendCalls()).toBe(before + 1);
      await act(() => vi.advanceTimersByTimeAsync(pageRetryDelayMs(2) / 2));
      expect(appendCalls()).toBe(before + 1);
      expect(screen.getByRole("alert")).toHaveTextContent("storage unavailable");

      failing = false;
      fireEvent.click(within(screen.getByRole("alert")).getByRole("button", { name: "Try again" }));
      await waitFor(() => expect(screen.getByText(/Image 1 of 6/)).toBeInTheDocument());
      expect(screen.queryByRole("alert")).not.toBeInTheDocument();
      expect(shownImage()).toBe("Part image img_1.jpeg");
    });

    it("keeps the images already loaded usable", async () => {
      api.fetchQueue.mockImplementation(async (_limit: number, cursor: string | null = null) => {
        if (cursor === null) return { items, next_cursor: "c1", total: 6 };
        return unavailable();
      });
      const user = userEvent.setup();
      await ready();
      await screen.findByRole("alert");

      await user.keyboard("o");
      await waitFor(() => expect(api.decideItem).toHaveBeenCalledWith("id1", "ok", ""));
      await waitFor(() => expect(shownImage()).toBe("Part image img_2.jpeg"));
      // No request loop meanwhile (at most the retry after 2 s on a slow machine).
      expect(appendCalls()).toBeLessThanOrEqual(2);
    });
  });

  it("waits longer after each failed next page, up to 30 s", () => {
    expect([1, 2, 3, 4, 5, 6, 50].map(pageRetryDelayMs)).toEqual([2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
  });

  it("says so when nothing is waiting", async () => {
    api.fetchQueue.mockResolvedValue({ items: [], next_cursor: null, total: 0 });
    render(<ReviewScreen />);
    expect(await screen.findByText("Nothing waiting for you")).toBeInTheDocument();
    expect(screen.getByText(/Every unclear image has a decision/)).toBeInTheDocument();
    expect(screen.getByTestId("remaining")).toHaveTextContent("0");
  });
});
