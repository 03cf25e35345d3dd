/** Keyboard shortcuts of the review screen, defined once for the handler and the on-screen list. */
import { useEffect, useRef } from "react";

export type ShortcutAction =
  | "ok"
  | "defect"
  | "next"
  | "previous"
  | "undo"
  | "zoom"
  | "zoomIn"
  | "zoomOut"
  | "zoomReset"
  | "panLeft"
  | "panRight"
  | "panUp"
  | "panDown";

export interface ShortcutHelp {
  keys: string[];
  label: string;
}

/** What the screen lists, in the order an inspector needs them. */
export const SHORTCUT_HELP: ShortcutHelp[] = [
  { keys: ["O"], label: "Mark OK" },
  { keys: ["D"], label: "Mark defect" },
  { keys: ["→", "N"], label: "Next image" },
  { keys: ["←", "P"], label: "Previous image" },
  { keys: ["U"], label: "Undo decision" },
  { keys: ["Z"], label: "Zoom in / out" },
  { keys: ["+", "−"], label: "Zoom step" },
  { keys: ["0"], label: "Reset zoom" },
  { keys: ["Shift+←↑↓→"], label: "Pan" },
];

// Decisions must not fire twice from a held key.
const NO_REPEAT = new Set<ShortcutAction>(["ok", "defect", "undo", "zoom", "zoomReset"]);

/** The action a key press asks for, or null when the key is not a shortcut. */
export function actionFor(event: Pick<KeyboardEvent, "key" | "shiftKey" | "ctrlKey" | "metaKey" | "altKey">): ShortcutAction | null {
  // Leave the browser's own shortcuts (Ctrl+D bookmarks, Cmd+P print...) alone.
  if (event.ctrlKey || event.metaKey || event.altKey) return null;
  if (event.shiftKey) {
    switch (event.key) {
      case "ArrowLeft":
        return "panLeft";
      case "ArrowRight":
        return "panRight";
      case "ArrowUp":
        return "panUp";
      case "ArrowDown":
        return "panDown";
    }
  }
  switch (event.key) {
    case "o":
    case "O":
      return "ok";
    case "d":
    case "D":
      return "defect";
    case "ArrowRight":
    case "n":
    case "N":
      return "next";
    case "ArrowLeft":
    case "p":
    case "P":
      return "previous";
    case "u":
    case "U":
      return "undo";
    case "z":
    case "Z":
      return "zoom";
    case "+":
    case "=":
      return "zoomIn";
    case "-":
    case "_":
      return "zoomOut";
    case "0":
      return "zoomReset";
    default:
      return null;
  }
}

/** True when the key press belongs to a text field, not to the shortcuts. */
export function isTyping(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable) return true;
  const tag = target.tagName;
  if (tag === "TEXTAREA" || tag === "SELECT") return true;
  if (tag === "INPUT") {
    const type = (target as HTMLInputElement).type;
    return !["button", "submit", "reset", "checkbox", "radio", "range"].includes(type);
  }
  return false;
}

/** Call `handler` for shortcut key presses anywhere on the page while `enabled`. */
export function useShortcuts(handler: (action: ShortcutAction) => void, enabled = true): void {
  const latest = useRef(handler);
  latest.current = handler;

  useEffect(() => {
    if (!enabled) return;
    const onKeyDown = (event: KeyboardEvent) => {
      if (event.defaultPrevented || isTyping(event.target)) return;
      const action = actionFor(event);
      if (action === null) return;
      event.preventDefault();
      if (event.repeat && NO_REPEAT.has(action)) return;
      latest.current(action);
    };
    window.addEventListener("keydown", onKeyDown);
    return () => window.removeEventListener("keydown", onKeyDown);
  }, [enabled]);
}
