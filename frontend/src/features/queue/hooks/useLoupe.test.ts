import { describe, expect, it } from "vitest";

import { MAX_SCALE, clampView, zoomAt } from "./useLoupe";

describe("loupe geometry", () => {
  it("keeps the point under the cursor fixed while zooming", () => {
    const at = { x: 300, y: 120 };
    const view = zoomAt({ scale: 1, x: 0, y: 0 }, 2, at, 800, 600);
    // The image point under `at` before zooming was `at` itself; after, it maps back to `at`.
    expect(view.scale).toBe(2);
    expect(view.x + at.x * view.scale).toBeCloseTo(at.x);
    expect(view.y + at.y * view.scale).toBeCloseTo(at.y);
  });

  it("never zooms out past the whole image or in past the maximum", () => {
    expect(zoomAt({ scale: 1, x: 0, y: 0 }, 0.5, { x: 10, y: 10 }, 800, 600)).toEqual({ scale: 1, x: 0, y: 0 });
    expect(zoomAt({ scale: 4, x: 0, y: 0 }, 100, { x: 0, y: 0 }, 800, 600).scale).toBe(MAX_SCALE);
  });

  it("does not let a pan drag an empty border into view", () => {
    expect(clampView({ scale: 2, x: 50, y: -5000 }, 800, 600)).toEqual({ scale: 2, x: 0, y: -600 });
  });
});
