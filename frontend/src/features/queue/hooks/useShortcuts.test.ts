import { describe, expect, it } from "vitest";

import { actionFor, isTyping } from "./useShortcuts";

const key = (k: string, mods: Partial<Record<"shiftKey" | "ctrlKey" | "metaKey" | "altKey", boolean>> = {}) => ({
  key: k,
  shiftKey: false,
  ctrlKey: false,
  metaKey: false,
  altKey: false,
  ...mods,
});

describe("actionFor", () => {
  it.each([
    ["o", "ok"],
    ["O", "ok"],
    ["d", "defect"],
    ["ArrowRight", "next"],
    ["n", "next"],
    ["ArrowLeft", "previous"],
    ["P", "previous"],
    ["u", "undo"],
    ["z", "zoom"],
    ["+", "zoomIn"],
    ["-", "zoomOut"],
    ["0", "zoomReset"],
  ])("maps %s to %s", (k, action) => {
    expect(actionFor(key(k))).toBe(action);
  });

  it("pans with shift and the arrows", () => {
    expect(actionFor(key("ArrowLeft", { shiftKey: true }))).toBe("panLeft");
    expect(actionFor(key("ArrowDown", { shiftKey: true }))).toBe("panDown");
  });

  it("leaves browser shortcuts and other keys alone", () => {
    expect(actionFor(key("d", { ctrlKey: true }))).toBeNull();
    expect(actionFor(key("p", { metaKey: true }))).toBeNull();
    expect(actionFor(key("x"))).toBeNull();
    expect(actionFor(key("Enter"))).toBeNull();
  });
});

describe("isTyping", () => {
  it("knows text fields from buttons", () => {
    expect(isTyping(document.createElement("textarea"))).toBe(true);
    expect(isTyping(document.createElement("input"))).toBe(true);
    const checkbox = document.createElement("input");
    checkbox.type = "checkbox";
    expect(isTyping(checkbox)).toBe(false);
    expect(isTyping(document.createElement("button"))).toBe(false);
    expect(isTyping(null)).toBe(false);
  });
});
