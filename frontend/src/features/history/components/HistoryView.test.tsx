import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";

import type { HistoryEntry } from "../../../lib/types";
import * as historyApi from "../api/history";
import { HistoryView, sinceFromDate } from "./HistoryView";

vi.mock("../api/history", () => ({
  fetchHistory: vi.fn(),
  historyImageUrl: (id: string) => `/api/items/${id}/image`,
}));
const api = vi.mocked(historyApi);

function entry(over: Partial<HistoryEntry>): HistoryEntry {
  return {
    id: "id1",
    key: "unclear/line-1/img_1.jpeg",
    decided_key: "human_decided/line-1/ok_img_1.jpeg",
    label: "ok",
    note: null,
    inspector: "alice",
    decided_at: "2026-11-25T08:30:00Z",
    model_label: "unclear",
    confidence: 0.61,
    model_version: "1.0.0",
    action: "decision",
    ...over,
  };
}

describe("HistoryView", () => {
  beforeEach(() => {
    api.fetchHistory.mockResolvedValue({
      items: [
        entry({ id: "id2", inspector: "bob", label: "defect", note: "crack at 3 o'clock" }),
        entry({ id: "id1" }),
        entry({ id: "id1", action: "undo" }),
      ],
      next_cursor: null,
    });
  });

  it("lists decisions and undos, newest first", async () => {
    render(<HistoryView />);
    const table = await screen.findByRole("table");
    await waitFor(() => expect(within(table).getAllByRole("row")).toHaveLength(4));
    const rows = within(table).getAllByRole("row").slice(1);
    expect(rows[0]).toHaveTextContent("bob");
    expect(rows[0]).toHaveTextContent("Defect");
    expect(rows[0]).toHaveTextContent("crack at 3 o'clock");
    expect(rows[2]).toHaveTextContent("Undone");
    expect(api.fetchHistory).toHaveBeenCalledWith({});
    expect(screen.queryByRole("button", { name: "Load older" })).not.toBeInTheDocument();
  });

  it("loads older pages with the cursor and the same filters, until there are none", async () => {
    const user = userEvent.setup();
    api.fetchHistory
      .mockResolvedValueOnce({ items: [entry({ id: "new", inspector: "bob" })], next_cursor: "audit/c1" })
      .mockResolvedValueOnce({ items: [entry({ id: "new", inspector: "bob" })], next_cursor: "audit/c1" })
      .mockResolvedValueOnce({ items: [entry({ id: "old", inspector: "carol" })], next_cursor: null });
    render(<HistoryView />);
    await user.type(screen.getByLabelText("Inspector"), "bob");
    await user.click(screen.getByRole("button", { name: "Apply" }));
    await waitFor(() => expect(api.fetchHistory).toHaveBeenCalledTimes(2));
    await user.click(await screen.findByRole("button", { name: "Load older" }));
    const table = screen.getByRole("table");
    await waitFor(() => expect(within(table).getAllByRole("row")).toHaveLength(3));
    expect(api.fetchHistory).toHaveBeenLastCalledWith(
      { inspector: "bob", label: "", since: undefined },
      "audit/c1",
    );
    expect(within(table).getAllByRole("row")[2]).toHaveTextContent("carol");
    expect(screen.queryByRole("button", { name: "Load older" })).not.toBeInTheDocument();
  });

  it("passes inspector, label and date filters to the API", async () => {
    const user = userEvent.setup();
    render(<HistoryView />);
    await screen.findByRole("table");

    await user.type(screen.getByLabelText("Inspector"), "bob");
    await user.selectOptions(screen.getByLabelText("Label"), "defect");
    await user.type(screen.getByLabelText("Since"), "2026-11-24");
    await user.click(screen.getByRole("button", { name: "Apply" }));

    await waitFor(() =>
      expect(api.fetchHistory).toHaveBeenLastCalledWith({
        inspector: "bob",
        label: "defect",
        since: new Date(2026, 10, 24).toISOString(),
      }),
    );

    await user.click(screen.getByRole("button", { name: "Clear" }));
    await waitFor(() => expect(api.fetchHistory).toHaveBeenLastCalledWith({}));
    expect(screen.getByLabelText("Inspector")).toHaveValue("");
  });

  it("offers no older page once new filters fail to load", async () => {
    const user = userEvent.setup();
    api.fetchHistory
      .mockResolvedValueOnce({ items: [entry({})], next_cursor: "audit/c1" })
      .mockRejectedValueOnce(new Error("storage unavailable"));
    render(<HistoryView />);
    expect(await screen.findByRole("button", { name: "Load older" })).toBeInTheDocument();
    await user.selectOptions(screen.getByLabelText("Label"), "defect");
    await user.click(screen.getByRole("button", { name: "Apply" }));
    expect(await screen.findByText(/Could not load the history/)).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Load older" })).not.toBeInTheDocument();
    // No rows of the old filter under the new one: only the header row is left.
    expect(within(screen.getByRole("table")).getAllByRole("row")).toHaveLength(1);
    expect(screen.queryByText("alice")).not.toBeInTheDocument();
  });

  it("keeps the rows shown when older entries fail to load", async () => {
    const user = userEvent.setup();
    api.fetchHistory
      .mockResolvedValueOnce({ items: [entry({ id: "new", inspector: "bob" })], next_cursor: "audit/c1" })
      .mockRejectedValueOnce(new Error("storage unavailable"));
    render(<HistoryView />);
    await user.click(await screen.findByRole("button", { name: "Load older" }));
    expect(await screen.findByText(/Could not load the history: storage unavailable/)).toBeInTheDocument();
    const rows = within(screen.getByRole("table")).getAllByRole("row");
    expect(rows).toHaveLength(2);
    expect(rows[1]).toHaveTextContent("bob");
    expect(screen.getByRole("button", { name: "Load older" })).toBeInTheDocument();
  });

  it("says when nothing matches", async () => {
    api.fetchHistory.mockResolvedValue({ items: [], next_cursor: null });
    render(<HistoryView />);
    expect(await screen.findByText("No decisions match these filters.")).toBeInTheDocument();
  });
});

describe("sinceFromDate", () => {
  it("is local midnight, and nothing for a bad date", () => {
    expect(sinceFromDate("2026-01-02")).toBe(new Date(2026, 0, 2).toISOString());
    expect(sinceFromDate("")).toBeUndefined();
    expect(sinceFromDate("02/01/2026")).toBeUndefined();
  });
});
