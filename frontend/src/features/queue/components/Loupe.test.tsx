import { act, fireEvent, render, screen } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";

import { ApiError } from "../../../lib/api";
import * as queueApi from "../api/queue";
import { useLoupe } from "../hooks/useLoupe";
import { Loupe } from "./Loupe";

// vitest hoists vi.mock above the imports: the factory loads the shared mock module itself.
vi.mock("../api/queue", () => import("../../../test/queueApiMock"));

const api = vi.mocked(queueApi);

function Harness({ itemId }: { itemId: string }) {
  return <Loupe itemId={itemId} alt={`Part image ${itemId}`} loupe={useLoupe()} />;
}

/** A promise the test settles by hand. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function failImage(itemId: string) {
  fireEvent.error(screen.getByRole("img", { name: `Part image ${itemId}` }));
}

const TOO_LARGE =
  "unclear/line-1/img_1.png is too large to show here (31457280 bytes over the 26214400 set by max_image_bytes); " +
  "it can still be decided";

describe("Loupe", () => {
  it("shows the server's reason when the image cannot be loaded", async () => {
    api.imageProblem.mockResolvedValueOnce(TOO_LARGE);
    render(<Harness itemId="id1" />);

    failImage("id1");

    expect(await screen.findByRole("alert")).toHaveTextContent(`The image could not be shown: ${TOO_LARGE}`);
    expect(api.imageProblem).toHaveBeenCalledTimes(1);
    expect(api.imageProblem).toHaveBeenCalledWith("id1", expect.any(AbortSignal));
  });

  it("falls back to a network sentence when asking the service fails too", async () => {
    api.imageProblem.mockRejectedValueOnce(
      new ApiError(0, "Cannot reach the review service. Check the network and try again."),
    );
    render(<Harness itemId="id1" />);

    failImage("id1");

    const alert = await screen.findByRole("alert");
    await vi.waitFor(() =>
      expect(alert).toHaveTextContent("The image could not be loaded (network). Reload the page to try again."),
    );
    expect(alert).not.toHaveTextContent(/decide/i);
  });

  it("never shows the reason for a previous image once the image changes", async () => {
    const first = deferred<string | null>();
    const second = deferred<string | null>();
    api.imageProblem.mockReturnValueOnce(first.promise).mockReturnValueOnce(second.promise);
    const { rerender } = render(<Harness itemId="id1" />);

    failImage("id1");
    rerender(<Harness itemId="id2" />);
    // The answer about id1 arrives while id2 is still loading: it must not be shown for id2.
    await act(async () => first.resolve("already decided by bob as defect"));
    expect(screen.getByText("Loading image…")).toBeInTheDocument();
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();

    // id2 fails too: until its own answer comes, the overlay says it is asking, not id1's reason.
    failImage("id2");
    expect(screen.getByRole("alert")).toHaveTextContent(
      "The image could not be shown. Asking the review service why…",
    );
    await act(async () => second.resolve("no image for unclear/img_2.jpeg"));
    expect(screen.getByRole("alert")).toHaveTextContent("The image could not be shown: no image for unclear/img_2.jpeg");
    expect(screen.queryByText(/already decided by bob/)).not.toBeInTheDocument();
    // The question about id1 was withdrawn when id2 came.
    expect(api.imageProblem.mock.calls[0]?.[1]?.aborted).toBe(true);
  });

  it("withdraws the question when the loupe goes away", async () => {
    const answer = deferred<string | null>();
    api.imageProblem.mockReturnValueOnce(answer.promise);
    const { unmount } = render(<Harness itemId="id1" />);

    failImage("id1");
    unmount();
    await act(async () => answer.resolve("storage unavailable"));

    expect(api.imageProblem).toHaveBeenCalledTimes(1);
    expect(api.imageProblem.mock.calls[0]?.[1]?.aborted).toBe(true);
  });
});
