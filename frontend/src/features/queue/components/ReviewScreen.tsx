import { useCallback, useEffect, useState } from "react";

import { Kbd } from "../../../components/Kbd";
import { Notice } from "../../../components/Notice";
import { Toast } from "../../../components/Toast";
import { config } from "../../../config";
import { count } from "../../../lib/format";
import type { Label } from "../../../lib/types";
import { imageUrl } from "../api/queue";
import { useLoupe } from "../hooks/useLoupe";
import { usePreload } from "../hooks/usePreload";
import { useReviewQueue } from "../hooks/useReviewQueue";
import { type ShortcutAction, useShortcuts } from "../hooks/useShortcuts";
import { ItemDetails } from "./ItemDetails";
import { Loupe } from "./Loupe";
import { ShortcutList } from "./ShortcutList";

const PAN_STEP = 60;
const ZOOM_STEP = 1.25;

/** The inspector's main screen: one image, its details, and the decision. */
export function ReviewScreen() {
  const queue = useReviewQueue();
  const loupe = useLoupe();
  const [note, setNote] = useState("");
  const { current } = queue;
  const currentId = current?.id ?? null;

  usePreload(queue.upcoming.map((item) => imageUrl(item.id)));

  // A new image starts unzoomed and without the previous image's note.
  const { reset } = loupe;
  useEffect(() => {
    reset();
    setNote("");
  }, [currentId, reset]);

  const decide = useCallback(
    (label: Label) => {
      void queue.decide(label, note);
    },
    [queue, note],
  );

  const onShortcut = useCallback(
    (action: ShortcutAction) => {
      switch (action) {
        case "ok":
          return decide("ok");
        case "defect":
          return decide("defect");
        case "next":
          return queue.next();
        case "previous":
          return queue.previous();
        case "undo":
          return void queue.undo();
        case "zoom":
          return loupe.toggle();
        case "zoomIn":
          return loupe.zoomBy(ZOOM_STEP);
        case "zoomOut":
          return loupe.zoomBy(1 / ZOOM_STEP);
        case "zoomReset":
          return loupe.reset();
        case "panLeft":
          return loupe.pan(PAN_STEP, 0);
        case "panRight":
          return loupe.pan(-PAN_STEP, 0);
        case "panUp":
          return loupe.pan(0, PAN_STEP);
        case "panDown":
          return loupe.pan(0, -PAN_STEP);
      }
    },
    [decide, queue, loupe],
  );
  useShortcuts(onShortcut);

  const canDecide = current !== null && !queue.busy;
  const position = current ? queue.index + 1 : 0;
  const loadedCount = queue.items.length;

  return (
    <div className="review">
      <section className="stage" aria-label="Image under review">
        {current ? (
          <Loupe itemId={current.id} alt={`Part image ${current.name}`} loupe={loupe} />
        ) : (
          <div className="stage-empty">
            {queue.loadError ? (
              <div>
                <p>The queue could not be loaded: {queue.loadError}</p>
                <button type="button" className="btn" onClick={() => void queue.reload()}>
                  Try again
                </button>
              </div>
            ) : queue.pageError ? (
              // Past the last loaded image while the next page failed; the panel's alert offers "Try again".
              <p>The next images could not be loaded yet.</p>
            ) : !queue.loaded || queue.loading ? (
              <p>Loading the queue…</p>
            ) : (
              <div>
                <p className="stage-empty-title">Nothing waiting for you</p>
                <p className="muted">
                  {queue.total
                    ? "The images still waiting are claimed by other inspectors."
                    : "Every unclear image has a decision."}{" "}
                  New ones show up here on their own (checked every {Math.round(config().queuePollMs / 1000)} s).
                </p>
                <button type="button" className="btn" onClick={() => void queue.reload()}>
                  Check now
                </button>
              </div>
            )}
          </div>
        )}
        <div className="stage-tools" role="group" aria-label="Zoom">
          <button
            type="button"
            className="btn btn-tool"
            onClick={() => loupe.zoomBy(1 / ZOOM_STEP)}
            aria-label="Zoom out"
            aria-keyshortcuts="-"
            disabled={!current}
          >
            −
          </button>
          <button
            type="button"
            className="btn btn-tool"
            onClick={() => loupe.toggle()}
            aria-label={loupe.zoomed ? "Zoom off (Z)" : "Zoom in (Z)"}
            aria-pressed={loupe.zoomed}
            aria-keyshortcuts="Z"
            disabled={!current}
          >
            Zoom <Kbd>Z</Kbd>
          </button>
          <button
            type="button"
            className="btn btn-tool"
            onClick={() => loupe.zoomBy(ZOOM_STEP)}
            aria-label="Zoom in"
            aria-keyshortcuts="+"
            disabled={!current}
          >
            +
          </button>
        </div>
      </section>

      <aside className="panel" aria-label="Decision">
        <div className="progress">
          <p className="progress-left">
            <strong data-testid="remaining">{queue.total === null ? "–" : count(queue.total)}</strong> left
          </p>
          {loadedCount > 0 && (
            <p className="muted progress-position">
              Image {position} of {count(loadedCount)}
              {queue.items.length < (queue.total ?? 0) ? " loaded" : ""}
            </p>
          )}
        </div>

        {queue.notice && (
          <Notice kind={queue.notice.kind} onDismiss={queue.dismissNotice}>
            {queue.notice.text}
          </Notice>
        )}

        {queue.pageError && (
          <Notice
            kind="error"
            action={{ label: "Try again", onClick: () => void queue.retryPage(), disabled: queue.loading }}
          >
            Could not load more images: {queue.pageError.replace(/\.$/, "")}. Retrying automatically.
          </Notice>
        )}

        {current && <ItemDetails item={current} claim={queue.claim} />}

        <div className="decide" role="group" aria-label="Decide">
          <button
            type="button"
            className="btn btn-decide btn-ok"
            onClick={() => decide("ok")}
            disabled={!canDecide}
            aria-keyshortcuts="O"
            aria-label="Mark OK (O)"
          >
            OK <Kbd>O</Kbd>
          </button>
          <button
            type="button"
            className="btn btn-decide btn-defect"
            onClick={() => decide("defect")}
            disabled={!canDecide}
            aria-keyshortcuts="D"
            aria-label="Mark defect (D)"
          >
            Defect <Kbd>D</Kbd>
          </button>
        </div>

        <div className="moves" role="group" aria-label="Navigate">
          <button
            type="button"
            className="btn"
            onClick={queue.previous}
            disabled={queue.index === 0 || loadedCount === 0}
            aria-keyshortcuts="ArrowLeft P"
            aria-label="Previous image (Left arrow or P)"
          >
            ← Prev
          </button>
          <button
            type="button"
            className="btn"
            onClick={queue.next}
            disabled={loadedCount === 0}
            aria-keyshortcuts="ArrowRight N"
            aria-label="Next image (Right arrow or N)"
          >
            Next →
          </button>
          <button
            type="button"
            className="btn"
            onClick={() => void queue.undo()}
            disabled={queue.busy}
            aria-keyshortcuts="U"
            aria-label="Undo last decision (U)"
          >
            Undo <Kbd>U</Kbd>
          </button>
        </div>

        <label className="field note">
          <span>
            Note <span className="muted">(optional; Esc leaves the field)</span>
          </span>
          <textarea
            value={note}
            maxLength={500}
            rows={1}
            onChange={(e) => setNote(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === "Escape") e.currentTarget.blur();
            }}
            disabled={!current}
          />
        </label>

        <ShortcutList />
      </aside>

      <div className="sr-only" role="status" aria-live="polite" data-testid="status">
        {queue.status}
      </div>

      {queue.undoOffer && (
        <Toast
          key={queue.undoOffer.decision.decided_key}
          message={`${queue.undoOffer.item.name} marked ${queue.undoOffer.decision.label === "ok" ? "OK" : "defect"}.`}
          expiresAt={queue.undoOffer.expiresAt}
          actionLabel="Undo"
          actionHint="U"
          onAction={() => void queue.undo()}
          onExpire={queue.dropUndo}
        />
      )}
    </div>
  );
}
