import { render, screen, within } from "@testing-library/react";
import { beforeEach, describe, expect, it, vi } from "vitest";

import { ApiError } from "../../../lib/api";
import type { Stats } from "../../../lib/types";
import * as statsApi from "../api/stats";
import { Dashboard } from "./Dashboard";
import { niceMax } from "./ThroughputChart";

vi.mock("../api/stats", () => ({ fetchStats: vi.fn() }));
const api = vi.mocked(statsApi);

function stats(): Stats {
  const start = Date.UTC(2026, 10, 24, 10);
  return {
    counts: { okay: 1234, defect: 56, unclear: 7, human_decided: 89, rejected: 2 },
    defect_rate: 0.0432,
    unclear_rate: 0.0054,
    throughput_per_hour: Array.from({ length: 24 }, (_, i) => ({
      hour: new Date(start + i * 3_600_000).toISOString(),
      decisions: i === 23 ? 40 : i % 4,
    })),
    oldest_unclear_age_s: 3 * 3600 + 5 * 60,
    computed_at: new Date(2026, 10, 25, 9, 42, 10).toISOString(),
    // Local 09:07, whatever the test machine's time zone.
    totals_computed_at: new Date(2026, 10, 25, 9, 7, 30).toISOString(),
  };
}

describe("Dashboard", () => {
  beforeEach(() => {
    api.fetchStats.mockResolvedValue(stats());
  });

  it("shows the counts, the rates and the oldest waiting image", async () => {
    render(<Dashboard />);

    expect(await screen.findByTestId("count-okay")).toHaveTextContent("1,234");
    expect(screen.getByTestId("count-defect")).toHaveTextContent("56");
    expect(screen.getByTestId("count-unclear")).toHaveTextContent("7");
    expect(screen.getByTestId("count-human_decided")).toHaveTextContent("89");
    expect(screen.getByTestId("count-rejected")).toHaveTextContent("2");
    expect(screen.getByTestId("defect-rate")).toHaveTextContent("4.3 %");
    expect(screen.getByTestId("unclear-rate")).toHaveTextContent("0.5 %");
    expect(screen.getByTestId("oldest-age")).toHaveTextContent("3 h 05 min");
  });

  it("says how old the whole-prefix totals are", async () => {
    render(<Dashboard />);
    expect(await screen.findByTestId("totals-as-of")).toHaveTextContent("Totals as of 09:07");
  });

  it("draws one bar per hour, scaled to the busiest hour", async () => {
    render(<Dashboard />);

    const chart = await screen.findByRole("img", { name: /Decisions per hour over the last 24 hours/ });
    expect(chart).toHaveAccessibleName(/73 in all/);
    const bars = within(chart).getAllByTestId("throughput-bar");
    expect(bars).toHaveLength(24);
    const heights = bars.map((b) => Number(b.getAttribute("height")));
    expect(Math.max(...heights)).toBe(heights[23]);
    expect(heights[0]).toBe(0);
    expect(heights[1]).toBeGreaterThan(0);
    expect(heights[23]).toBeCloseTo(40 * heights[1]!, 5);
  });

  it("says when nothing is waiting", async () => {
    api.fetchStats.mockResolvedValue({ ...stats(), oldest_unclear_age_s: null });
    render(<Dashboard />);
    expect(await screen.findByTestId("oldest-age")).toHaveTextContent("none waiting");
  });

  it("reports a failure with the server's message", async () => {
    api.fetchStats.mockRejectedValue(new ApiError(503, "storage unavailable: timeout"));
    render(<Dashboard />);
    expect(await screen.findByRole("alert")).toHaveTextContent("Could not load the figures: storage unavailable: timeout");
  });
});

describe("niceMax", () => {
  it("rounds up to an axis maximum with a whole-number midpoint", () => {
    expect(niceMax(0)).toBe(4);
    expect(niceMax(3)).toBe(4);
    expect(niceMax(5)).toBe(10);
    expect(niceMax(40)).toBe(40);
    expect(niceMax(41)).toBe(100);
    expect(niceMax(150)).toBe(200);
  });
});
