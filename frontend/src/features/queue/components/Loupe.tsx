import { type PointerEvent, useEffect, useRef, useState } from "react";

import type { Loupe as LoupeState, Point } from "../hooks/useLoupe";

interface LoupeProps {
  src: string;
  alt: string;
  loupe: LoupeState;
}

function local(el: HTMLElement, clientX: number, clientY: number): Point {
  const rect = el.getBoundingClientRect();
  return { x: clientX - rect.left, y: clientY - rect.top };
}

/**
 * The image with a zoom-and-pan loupe: wheel or pinch zooms at the pointer, drag pans,
 * double-click or double-tap toggles; keyboard zoom and pan come from the review screen.
 */
export function Loupe({ src, alt, loupe }: LoupeProps) {
  const { view, frameRef, pointer, zoomBy, pan, toggle } = loupe;
  const pointers = useRef(new Map<number, Point>());
  const pinchDistance = useRef<number | null>(null);
  const [dragging, setDragging] = useState(false);
  // Tied to the src it describes, so a new image never inherits the previous one's state.
  const [result, setResult] = useState<{ src: string; ok: boolean } | null>(null);
  const status = result?.src !== src ? "loading" : result.ok ? "ready" : "error";

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
          The image could not be loaded. Decide from the next one, or reload the page.
        </div>
      )}
      <div className="loupe-badge" aria-hidden="true">
        {zoomPercent} %
      </div>
    </div>
  );
}
