import { useEffect, useState } from "react";

import { Kbd } from "./Kbd";

interface ToastProps {
  message: string;
  /** Local clock time (ms) when the toast's action stops being possible. */
  expiresAt: number;
  actionLabel: string;
  actionHint?: string;
  onAction: () => void;
  onExpire: () => void;
}

/** A short-lived message with one action and a visible countdown (e.g. Undo). */
export function Toast({ message, expiresAt, actionLabel, actionHint, onAction, onExpire }: ToastProps) {
  const [now, setNow] = useState(() => Date.now());
  const remaining = Math.max(0, Math.ceil((expiresAt - now) / 1000));

  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), 250);
    return () => window.clearInterval(timer);
  }, []);

  useEffect(() => {
    if (remaining <= 0) onExpire();
  }, [remaining, onExpire]);

  return (
    // Not a live region: the screen's own status line already announces what happened.
    <div className="toast" role="group" aria-label={message}>
      <span className="toast-message">{message}</span>
      <button type="button" className="btn btn-toast" onClick={onAction} aria-keyshortcuts={actionHint}>
        {actionLabel}
        {actionHint && <Kbd>{actionHint}</Kbd>}
        <span className="toast-countdown" aria-label={`${remaining} seconds left`}>
          {remaining} s
        </span>
      </button>
    </div>
  );
}
