/** Zoom-and-pan state of the image loupe, in container pixels. */
import { type MutableRefObject, type RefObject, useCallback, useRef, useState } from "react";

export interface LoupeView {
  scale: number;
  x: number;
  y: number;
}

export interface Point {
  x: number;
  y: number;
}

export const MIN_SCALE = 1;
export const MAX_SCALE = 8;
export const TOGGLE_SCALE = 2.5;
const IDENTITY: LoupeView = { scale: 1, x: 0, y: 0 };

/** Keep the zoomed image covering the frame: no empty border can be dragged into view. */
export function clampView(view: LoupeView, width: number, height: number): LoupeView {
  const scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, view.scale));
  const minX = width - width * scale;
  const minY = height - height * scale;
  return {
    scale,
    x: Math.min(0, Math.max(minX, view.x)),
    y: Math.min(0, Math.max(minY, view.y)),
  };
}

/** Zoom by `factor` keeping the image point under `at` fixed on screen. */
export function zoomAt(view: LoupeView, factor: number, at: Point, width: number, height: number): LoupeView {
  const scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, view.scale * factor));
  const ratio = scale / view.scale;
  return clampView({ scale, x: at.x - (at.x - view.x) * ratio, y: at.y - (at.y - view.y) * ratio }, width, height);
}

export interface Loupe {
  view: LoupeView;
  zoomed: boolean;
  frameRef: RefObject<HTMLDivElement | null>;
  /** Last pointer position over the frame, so Z zooms where the inspector is looking. */
  pointer: MutableRefObject<Point | null>;
  toggle: (at?: Point) => void;
  zoomBy: (factor: number, at?: Point) => void;
  pan: (dx: number, dy: number) => void;
  reset: () => void;
}

/** State and actions for one loupe; the frame element gives the geometry. */
export function useLoupe(): Loupe {
  const [view, setView] = useState<LoupeView>(IDENTITY);
  const frameRef = useRef<HTMLDivElement | null>(null);
  const pointer = useRef<Point | null>(null);

  const size = useCallback(() => {
    const el = frameRef.current;
    return { width: el?.clientWidth || 1, height: el?.clientHeight || 1 };
  }, []);

  const zoomBy = useCallback(
    (factor: number, at?: Point) => {
      const { width, height } = size();
      const point = at ?? pointer.current ?? { x: width / 2, y: height / 2 };
      setView((v) => zoomAt(v, factor, point, width, height));
    },
    [size],
  );

  const toggle = useCallback(
    (at?: Point) => {
      const { width, height } = size();
      const point = at ?? pointer.current ?? { x: width / 2, y: height / 2 };
      setView((v) => (v.scale > 1 ? IDENTITY : zoomAt(IDENTITY, TOGGLE_SCALE, point, width, height)));
    },
    [size],
  );

  const pan = useCallback(
    (dx: number, dy: number) => {
      const { width, height } = size();
      setView((v) => clampView({ scale: v.scale, x: v.x + dx, y: v.y + dy }, width, height));
    },
    [size],
  );

  const reset = useCallback(() => setView(IDENTITY), []);

  return { view, zoomed: view.scale > 1, frameRef, pointer, toggle, zoomBy, pan, reset };
}
