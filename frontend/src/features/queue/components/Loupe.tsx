import { type PointerEvent, useEffect, useRef, useState } from "react";

import { imageProblem, imageUrl } from "../api/queue";
import type { Loupe as LoupeState, Point } from "../hooks/useLoupe";

interface LoupeProps {
  /** The item whose image is shown, from `imageUrl(itemId)`. */
  itemId: string;
  alt: string;
  loupe: LoupeState;
}

/** What the service said when asked again about an image that failed: its reason, or how asking failed. */
type Explanation = { src: string; reason: string } | { src: string; reason: null; reached: boolean };

function errorText(explained: Explanation | null): string {
  if (explained === null) return "The image could not be shown. Asking the review service why…";
  if (explained.reason !== null) return `The image could not be shown: ${explained.reason}`;
  if (!explained.reached) return "The image could not be loaded (network). Reload the page to try again.";
  return "The image could not be shown, although the review service sent it when asked again. Reload the page to try again.";
}

function local(el: HTMLElement, clientX: number, clientY: number): Point {
  const rect = el.getBoundingClientRect();
  return { x: clientX - rect.left, y: clientY - rect.top };
}

/**
 * The image with a zoom-and-pan loupe: wheel or pinch zooms at the pointer, drag pans,
 * double-click or double-tap toggles; keyboard zoom and pan come from the review screen.
 */
export function Loupe({ itemId, alt, loupe }: LoupeProps) {
  const src = imageUrl(itemId);
  const { view, frameRef, pointer, zoomBy, pan, toggle } = loupe;
  const pointers = useRef(new Map<number, Point>());
  const pinchDistance = useRef<number | null>(null);
  const [dragging, setDragging] = useState(false);
  // Tied to the src it describes, so a new image never inherits the previous one's state.
  const [result, setResult] = useState<{ src: string; ok: boolean } | null>(null);
  const status = result?.src !== src ? "loading" : result.ok ? "ready" : "error";
  // The <img> cannot read the error answer; the same URL asked once through the API client can.
  const [explanation, setExplanation] = useState<Explanation | null>(null);
  const explained = explanation?.src === src ? explanation : null;
  const failed = status === "error";

  useEffect(() => {
    if (!failed) return;
    const controller = new AbortController();
    const settle = (next: Explanation) => {
      // A newer image, or an unmounted loupe, ignores the answer about this one.
      if (!controller.signal.aborted) setExplanation(next);
    };
    imageProblem(itemId, controller.signal).then(
      (reason) => settle(reason === null ? { src, reason: null, reached: true } : { src, reason }),
      () => settle({ src, reason: null, reached: false }),
    );
    return () => controller.abort();
  }, [failed, itemId, src]);

  // React's wheel listener is passive; a non-passive one lets the loupe keep the page still.
  useEffect(() => {
    const el = frameRef.current;
    if (!el) return;
    const onWheel = (event: WheelEvent) => {
      event.preventDefault();
      zoomBy(Math.exp(-event.deltaY * 0.0015), local(el, event.clientX, event.clientY));
    };
    el.addEventListener("wheel", onWheel, { passive: false });
    return () => el.removeEventListener("wheel", onWheel);
  }, [frameRef, zoomBy]);

  function onPointerDown(event: PointerEvent<HTMLDivElement>) {
    const el = event.currentTarget;
    el.setPointerCapture?.(event.pointerId);
    pointers.current.set(event.pointerId, local(el, event.clientX, event.clientY));
    pinchDistance.current = null;
    setDragging(true);
  }

  function onPointerMove(event: PointerEvent<HTMLDivElement>) {
    const el = event.currentTarget;
    const here = local(el, event.clientX, event.clientY);
    pointer.current = here;
    const before = pointers.current.get(event.pointerId);
    if (!before) return;
    pointers.current.set(event.pointerId, here);
    if (pointers.current.size >= 2) {
      const [a, b] = [...pointers.current.values()] as [Point, Point];
      const distance = Math.hypot(a.x - b.x, a.y - b.y);
      if (pinchDistance.current !== null && pinchDistance.current > 0) {
        zoomBy(distance / pinchDistance.current, { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 });
      }
      pinchDistance.current = distance;
      return;
    }
    pan(here.x - before.x, here.y - before.y);
  }

  function onPointerUp(event: PointerEvent<HTMLDivElement>) {
    pointers.current.delete(event.pointerId);
    pinchDistance.current = null;
    if (pointers.current.size === 0) setDragging(false);
  }

  const zoomPercent = Math.round(view.scale * 100);
  return (
    <div
      ref={frameRef}
      className={`loupe${view.scale > 1 ? " loupe-zoomed" : ""}${dragging ? " loupe-dragging" : ""}`}
      onPointerDown={onPointerDown}
      onPointerMove={onPointerMove}
      onPointerUp={onPointerUp}
      onPointerCancel={onPointerUp}
      onPointerLeave={() => {
        pointer.current = null;
      }}
      onDoubleClick={(event) => toggle(local(event.currentTarget, event.clientX, event.clientY))}
      data-testid="loupe"
      data-scale={view.scale.toFixed(2)}
    >
      <img
        key={src}
        src={src}
        alt={alt}
        draggable={false}
        className="loupe-image"
        style={{ transform: `translate(${view.x}px, ${view.y}px) scale(${view.scale})` }}
        onLoad={() => setResult({ src, ok: true })}
        onError={() => setResult({ src, ok: false })}
      />
      {status === "loading" && <div className="loupe-overlay">Loading image…</div>}
      {status === "error" && (
        <div className="loupe-overlay loupe-error" role="alert">
          {errorText(explained)}
        </div>
      )}
      <div className="loupe-badge" aria-hidden="true">
        {zoomPercent} %
      </div>
    </div>
  );
}
